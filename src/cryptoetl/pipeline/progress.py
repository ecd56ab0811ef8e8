"""Progress of a run through its files: a line when a file starts, one every
:data:`PROGRESS_EVERY_S` while it is read, and one when it ends.

The file sources (CSV) keep one checkpoint entry per file in their cursor, ``{"files": {path:
FileState}}`` (:mod:`cryptoetl.sources.csv.checkpoint`), and every batch carries the whole
cursor: the entry a committed batch changed names the file it read, its ``offset`` how far the
committed rows go and its ``size`` the bytes to read. Other sources have no such entries and
get no progress lines (their runs are one snapshot; ``batch_committed`` says enough).

Lines (``source`` and ``run_id`` on each):

* ``file_started``: ``file``, ``bytes_total`` (logged with the file's first committed batch);
* ``file_progress``: ``file``, ``rows``, ``bytes_read``, ``bytes_total``, ``percent``,
  ``rows_per_s``, ``eta_s`` (from the bytes per second since the file's first batch; None
  until two batches are in);
* ``file_finished``: ``file``, ``rows``, ``bytes_total``, ``duration_s``, ``rows_per_s``,
  ``error`` (the reason when the whole file was rejected).

``rows`` counts the file's records looked at in this run (valid and rejected), as the run's
``processed`` does.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from cryptoetl.sources.base import Batch, JsonDict
from cryptoetl.sources.csv.checkpoint import FileState

log = logging.getLogger("cryptoetl.worker")

PROGRESS_EVERY_S = 10.0
_UNITS = ("B", "KB", "MB", "GB", "TB")


@dataclass
class _Reading:
    """One file being read in this run."""

    started_at: float
    first_offset: int  # where its first committed batch ended: the baseline of the byte rate
    first_at: float
    last_line_at: float
    rows: int = 0


class LoadProgress:
    """Feed it every committed batch of one run (:meth:`committed`); it logs the lines."""

    def __init__(
        self,
        extra: Mapping[str, str],
        cursor: JsonDict,
        *,
        every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._extra = dict(extra)
        self._entries = _file_entries(cursor)
        self._every_s = every_s
        self._clock = clock
        self._reading: dict[str, _Reading] = {}
        self._last_commit_at = clock()

    def committed(self, batch: Batch) -> None:
        if batch.cursor is None:
            return
        entries = _file_entries(batch.cursor)
        now = self._clock()
        for path, entry in entries.items():
            if entry != self._entries.get(path):
                self._advanced(path, msgspec.convert(entry, FileState), batch.processed, now)
        self._entries = entries
        self._last_commit_at = now

    def _advanced(self, path: str, state: FileState, rows: int, now: float) -> None:
        reading = self._reading.get(path)
        if reading is None:
            # Its reading began when the previous batch was committed (or the run started).
            reading = _Reading(self._last_commit_at, state.offset, now, now)
            self._reading[path] = reading
            self._started(path, state)
        reading.rows += rows
        if state.eof or state.error is not None:
            self._finished(path, state, reading, now)
            del self._reading[path]
        elif now - reading.last_line_at >= self._every_s:
            reading.last_line_at = now
            self._progress(path, state, reading, now)

    def _started(self, path: str, state: FileState) -> None:
        log.info(
            "%s: reading %s",
            _name(path),
            _size(state.size),
            extra={
                **self._extra,
                "event": "file_started",
                "file": path,
                "bytes_total": state.size,
            },
        )

    def _progress(self, path: str, state: FileState, reading: _Reading, now: float) -> None:
        percent = 100.0 * state.offset / state.size if state.size else 100.0
        rows_per_s = reading.rows / max(now - reading.started_at, 1e-9)
        eta_s = _eta(state, reading, now)
        eta = f"ETA {_duration(eta_s)}" if eta_s is not None else "ETA unknown"
        log.info(
            "%s: %.1f%% (%s of %s), %s rows, %s rows/s, %s",
            _name(path),
            percent,
            _size(state.offset),
            _size(state.size),
            f"{reading.rows:,}",
            f"{rows_per_s:,.0f}",
            eta,
            extra={
                **self._extra,
                "event": "file_progress",
                "file": path,
                "rows": reading.rows,
                "bytes_read": state.offset,
                "bytes_total": state.size,
                "percent": round(percent, 1),
                "rows_per_s": round(rows_per_s),
                "eta_s": None if eta_s is None else round(eta_s),
            },
        )

    def _finished(self, path: str, state: FileState, reading: _Reading, now: float) -> None:
        duration_s = now - reading.started_at
        rows_per_s = reading.rows / max(duration_s, 1e-9)
        how = f"rejected ({state.error})" if state.error is not None else "done"
        log.info(
            "%s: %s, %s rows in %.1f s (%s rows/s)",
            _name(path),
            how,
            f"{reading.rows:,}",
            duration_s,
            f"{rows_per_s:,.0f}",
            extra={
                **self._extra,
                "event": "file_finished",
                "file": path,
                "rows": reading.rows,
                "bytes_total": state.size,
                "duration_s": round(duration_s, 3),
                "rows_per_s": round(rows_per_s),
                "error": state.error,
            },
        )


def _file_entries(cursor: JsonDict) -> dict[str, Any]:
    files = cursor.get("files")
    return files if isinstance(files, dict) else {}


def _eta(state: FileState, reading: _Reading, now: float) -> float | None:
    """Seconds left at the byte rate since the file's first batch; None before a second one."""
    done = state.offset - reading.first_offset
    if done <= 0 or now <= reading.first_at:
        return None
    return max(0.0, (state.size - state.offset) * (now - reading.first_at) / done)


def _name(path: str) -> str:
    return os.path.basename(path) or path


def _size(n: float) -> str:
    unit = 0
    while n >= 1000 and unit < len(_UNITS) - 1:
        n /= 1000
        unit += 1
    return f"{n:.0f} B" if unit == 0 else f"{n:.1f} {_UNITS[unit]}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
