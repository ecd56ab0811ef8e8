"""Reading a source's batches ahead of their writes, and the interpreter tuned for it.

While one batch is being written, the source already parses and fetches the next ones (a CSV
parser runs in a thread), through a small queue: :func:`read_ahead`. What the source raises
comes out of the queue as :class:`SourceFailed`, so the runner can tell the source's failure
from the database's. A large load through that queue makes millions of short-lived objects:
:func:`tune_interpreter_for_bulk_loads` sets the collector and the GIL switch interval for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cryptoetl.sources.base import Batch


class SourceFailed(Exception):
    """The source raised ``error`` while producing batches: its failure, not the database's."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _End:
    """Marks the end of a source's batches in the read-ahead queue."""


@dataclass
class _Failed:
    error: Exception


@contextlib.asynccontextmanager
async def read_ahead(
    batches: AsyncIterator[Batch], depth: int = 2
) -> AsyncIterator[AsyncIterator[Batch]]:
    """Let the source parse/fetch the next batches while the current one is being written.

    Reading ahead is safe: a checkpoint only moves when its batch is committed, so batches read
    but not written when a run stops are simply read again next time.
    """
    queue: asyncio.Queue[Batch | _End | _Failed] = asyncio.Queue(maxsize=depth)

    async def pump() -> None:
        try:
            async for batch in batches:
                await queue.put(batch)
        except Exception as exc:
            await queue.put(_Failed(exc))
            return
        await queue.put(_End())

    async def drain() -> AsyncIterator[Batch]:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise SourceFailed(item.error) from item.error
            yield item

    task = asyncio.create_task(pump())
    try:
        yield drain()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()


# A large load allocates millions of short-lived containers (CSV rows, records, their metadata
# dicts, COPY tuples) while a few batches stay alive in the read-ahead queue. With CPython's
# default thresholds (700, 10, 10) the collector re-scans those live batches thousands of times
# per million rows: that was about a sixth of the worker's CPU. Objects that exist when the
# worker starts (modules, settings, the seed) are frozen out of collection altogether.
GC_THRESHOLDS = (100_000, 50, 100)
# The CSV parser runs in a thread (read-ahead) while the event loop waits on PostgreSQL. Each
# answer from the database wakes the loop, which then waits for the parser to hand over the GIL:
# up to the switch interval (5 ms by default), several times per batch. 1 ms keeps the loop
# responsive; the parser loses little.
SWITCH_INTERVAL_S = 0.001


def tune_interpreter_for_bulk_loads() -> None:
    """Once per worker process, before its first run (idempotent)."""
    if gc.get_threshold() != GC_THRESHOLDS:
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
