"""The CSV source: every file of ``CSV_PATHS``, each from its checkpoint, in batches."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import ClassVar, TypeVar

from cryptoetl.config import Settings
from cryptoetl.sources.base import Batch, JsonDict, SourceType
from cryptoetl.sources.csv.checkpoint import FileState, RunStates, load_states, plan, resolve_paths
from cryptoetl.sources.csv.options import options_hash, parse_column_map
from cryptoetl.sources.csv.reader import FileReader
from cryptoetl.sources.csv.stream import Limits, echo, open_regular

T = TypeVar("T")


async def _in_daemon_thread(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in a thread of its own that the process does not wait for at exit.

    Not ``asyncio.to_thread``: ``asyncio.run`` joins the default executor's threads when it
    ends, and the interpreter joins them again at exit, so a read stuck on a hung network
    filesystem would hold a stopping worker forever. A daemon thread is left behind instead
    (the run was already closed as interrupted; the kernel closes the file with the process).
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def work() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(function(*args))
            except BaseException as exc:
                future.set_exception(exc)

    threading.Thread(target=work, name="csv-reader", daemon=True).start()
    return await asyncio.wrap_future(future)


class CsvSource:
    """Market observations from CSV files (see the package doc for every rule)."""

    source_type: ClassVar[SourceType] = "csv"

    def __init__(self, settings: Settings) -> None:
        self._paths = tuple(settings.csv_paths)
        self._column_map = parse_column_map(settings.csv_column_map)
        self._limits = Limits(
            max_line_bytes=settings.csv_max_line_bytes,
            max_fields=settings.csv_max_fields,
            max_record_lines=settings.csv_max_record_lines,
        )

    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        """Yield each file's new rows in batches; each batch carries the complete cursor.

        File reading and parsing run in a worker thread, one batch at a time, so the event
        loop stays responsive while a large file is read.
        """
        batches = self.iter_batches(cursor, batch_size)
        try:
            while True:
                batch = await _in_daemon_thread(next, batches, None)
                if batch is None:
                    return
                yield batch
        finally:
            # After a cancellation the worker thread may still be inside next(): closing then
            # raises ValueError; the generator (and its open file) is collected later instead.
            with contextlib.suppress(ValueError):
                batches.close()

    def iter_batches(self, cursor: JsonDict, batch_size: int) -> Generator[Batch, None, None]:
        """The synchronous core of :meth:`batches` (also used by the benchmark)."""
        batch_size = max(1, batch_size)
        previous = load_states(cursor)
        paths, warnings = resolve_paths(self._paths)
        # Entries of files no longer listed are dropped; the others are carried unchanged
        # until their file is read, so every batch holds the complete cursor.
        run = RunStates({p: previous[p] for p in paths if p in previous})
        if warnings:
            yield Batch(cursor=run.cursor(), warnings=warnings)
        for path in paths:
            yield from self._file_batches(run, path, previous.get(path), batch_size)

    def _file_batches(
        self, run: RunStates, path: str, prev: FileState | None, batch_size: int
    ) -> Iterator[Batch]:
        try:
            st = os.stat(path)
        except OSError as exc:  # vanished between listing and reading
            yield Batch(cursor=run.cursor(), warnings=[f"csv: {path}: cannot stat: {exc}"])
            return
        options = self._column_map.options_for(path)
        action, note = plan(prev, st, options_hash(options))
        if action == "skip":
            return
        reader = FileReader(
            run,
            path,
            prev if action == "resume" else None,
            options,
            batch_size,
            self._limits,
            note,
        )
        try:
            # Opened without blocking and checked to be a regular file before any read: a
            # FIFO or device swapped in after discovery cannot hang the source.
            fd, st = open_regular(path)
        except OSError as exc:
            reader.start_state(st)
            yield reader.file_reject(f"{path}: cannot open: {echo(exc.strerror or str(exc))}")
            return
        try:
            yield from reader.batches(fd, st)
        finally:
            os.close(fd)
