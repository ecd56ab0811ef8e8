"""Discovery and checkpoints: which files to read, and where each one resumes.

``CSV_PATHS`` lists files, directories (every ``*.csv`` inside, sorted) and globs. The cursor is
``{"files": {abs_path: FileState}}``; every batch carries all of it. For each file
(:func:`plan`):

* unchanged (same device/inode, size and mtime, fully read) -> no work but one ``stat``;
* grown, or touched (same size, new mtime) -> the already-read prefix ``[0, offset)`` is hashed
  (SHA-256, the whole prefix: about 0.6 s per GB here) and compared with the checkpoint: equal
  -> only the new rows are read; different -> an in-place rewrite: re-read from the start,
  with a warning;
* shrunk -> re-read from the start with a warning. Rows the file no longer has are **kept**:
  observations are history, and a shorter export says nothing about the past;
* replaced (new inode), its CSV_COLUMN_MAP entry changed, a checkpoint written by an older
  version (``version`` below :data:`VERSION`: no series facts) -> re-read from the start.

Re-reading is idempotent: a row's identity is its series and timestamp, and a reject's is
``<path>:<line>`` plus its payload.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
from typing import Final, Literal

import msgspec

from cryptoetl.sources.base import JsonDict
from cryptoetl.sources.csv.dates import FileDateOrder
from cryptoetl.sources.csv.series import SeriesFacts

VERSION: Final = 2  # 2: market series (venue/quote/interval) and the prefix hash
_HASH_BLOCK: Final = 1 << 20


class FileState(msgspec.Struct, kw_only=True):
    """One file's entry in the cursor, JSON-compatible (a missing field takes its default)."""

    version: int = 0
    dev: int
    inode: int
    size: int  # the size read up to (taken when the file was opened)
    mtime_ns: int
    offset: int = 0  # where the next run resumes: after the last newline-terminated row
    line: int = 0  # lines before offset
    prefix_hash: str = ""  # sha256 hex of bytes [0, offset)
    header: list[str] | None = None
    delimiter: str = ","
    date_order: FileDateOrder | None = None
    date_order_from: Literal["data", "default", "config"] | None = None
    # [some first part > 12, some second part > 12] over the rows read so far
    dm_evidence: list[bool] = msgspec.field(default_factory=lambda: [False, False])
    date_sep: str | None = None
    last_timestamp: str | None = None  # the latest timestamp read from the file (ISO, UTC)
    options_hash: str = ""  # of the file's CSV_COLUMN_MAP entry: a change forces a re-read
    series: SeriesFacts | None = None
    eof: bool = False  # everything up to ``size`` was processed
    error: str | None = None  # the file-level problem, if the file was rejected


Plan = Literal["skip", "resume", "full"]


def plan(prev: FileState | None, st: os.stat_result, options_hash: str) -> tuple[Plan, str]:
    """What to do with a file given its checkpoint, and why (for a warning when re-reading).

    ``resume`` holds only if the already-read prefix is unchanged (the reader checks its hash
    first; see the module doc).
    """
    if prev is None:
        return "full", ""
    if prev.version < VERSION:
        return "full", "its checkpoint was written by an older version (no market series)"
    if prev.options_hash != options_hash:
        return "full", "its CSV_COLUMN_MAP options changed"
    if (prev.dev, prev.inode) != (st.st_dev, st.st_ino):
        return "full", "it was replaced (new inode)"
    if st.st_size < prev.size:
        return "full", (
            f"it shrank from {prev.size:,} to {st.st_size:,} bytes; rows it no longer has "
            "are kept (observations are history)"
        )
    if st.st_size == prev.size and st.st_mtime_ns == prev.mtime_ns:
        return ("skip", "") if prev.eof else ("resume", "")
    if prev.error is not None or prev.header is None:
        return "full", ""
    return "resume", ""


def hash_range(fd: int, hasher: hashlib._Hash, start: int, end: int) -> None:
    """Feed bytes ``[start, end)`` of ``fd`` to ``hasher``, a block at a time."""
    pos = start
    while pos < end:
        block = os.pread(fd, min(_HASH_BLOCK, end - pos), pos)
        if not block:
            raise OSError(f"the file ended at {pos:,} bytes, before {end:,}")
        hasher.update(block)
        pos += len(block)


def prefix_matches(fd: int, prev: FileState) -> hashlib._Hash | None:
    """The hasher of ``[0, prev.offset)`` if it matches the checkpoint, else None."""
    hasher = hashlib.sha256()
    hash_range(fd, hasher, 0, prev.offset)
    return hasher if hasher.hexdigest() == prev.prefix_hash else None


def load_states(cursor: JsonDict) -> dict[str, FileState]:
    """The cursor's file entries; a malformed entry is dropped (that file is re-read)."""
    files = cursor.get("files") if isinstance(cursor, dict) else None
    states: dict[str, FileState] = {}
    if isinstance(files, dict):
        for path, entry in files.items():
            with contextlib.suppress(msgspec.ValidationError):
                states[str(path)] = msgspec.convert(entry, FileState)
    return states


class RunStates:
    """The states of all files during one run, so each batch carries them all."""

    def __init__(self, states: dict[str, FileState]) -> None:
        self.states = states

    def cursor(self) -> JsonDict:
        return {"files": {path: msgspec.to_builtins(s) for path, s in self.states.items()}}


def resolve_paths(entries: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """CSV_PATHS entries -> (absolute file paths in order, warnings for unusable entries)."""
    found: dict[str, None] = {}
    warnings: list[str] = []
    for raw in entries:
        entry = os.path.expanduser(raw)
        if any(c in entry for c in "*?["):
            matches = sorted(p for p in glob.glob(entry, recursive=True) if os.path.isfile(p))
        elif os.path.isdir(entry):
            matches = sorted(
                os.path.join(entry, name)
                for name in os.listdir(entry)
                if name.lower().endswith(".csv") and os.path.isfile(os.path.join(entry, name))
            )
        elif os.path.isfile(entry):
            matches = [entry]
        elif os.path.exists(entry):
            warnings.append(f"csv: CSV_PATHS entry {raw!r} is not a regular file; skipped")
            continue
        else:
            warnings.append(f"csv: CSV_PATHS entry {raw!r} does not exist")
            continue
        for match in matches:
            found.setdefault(os.path.abspath(match), None)
    return list(found), warnings
