"""A source's runs in the ``runs`` table: opened, counted batch by batch, closed.

A run is only opened while the worker holds its source's advisory lock (:func:`source_lock`), so
several worker replicas never ingest one source at once. Holding the lock also proves no live run
of that source exists: runs left ``running`` by a dead worker are closed as ``interrupted`` when
the next one opens. Each batch adds its counts (:class:`BatchCounts`) in the batch's own
transaction; the run's end (:class:`RunOutcome`) is written once the run is over.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptoetl.db.tables import runs
from cryptoetl.sources.base import SourceType

log = logging.getLogger("cryptoetl.worker")

# "not_started": the database could not even record the run (nothing was read).
RunStatus = Literal["success", "failed", "interrupted", "skipped", "not_started"]
LOCK_NAMESPACE = 0x43455431  # "CET1": keeps our advisory locks apart from anyone else's
DEAD_RUN_ERROR = (
    "closed at the next start: the worker running it ended without recording its end "
    "(killed, or the database was unavailable until it exited)"
)


@dataclass
class BatchCounts:
    processed: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    drift_events: int = 0
    raw_stored: int = 0

    def add(self, other: BatchCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


COUNTERS = tuple(f.name for f in fields(BatchCounts))  # the counter columns of `runs`


@dataclass
class RunOutcome:
    source: SourceType
    status: RunStatus
    run_id: uuid.UUID | None = None
    counts: BatchCounts = field(default_factory=BatchCounts)
    error: str | None = None
    ended_at: datetime | None = None


def lock_key(source: str) -> int:
    return zlib.crc32(f"cryptoetl:{source}".encode()) & 0x7FFFFFFF


@contextlib.asynccontextmanager
async def source_lock(engine: AsyncEngine, source: SourceType) -> AsyncIterator[bool]:
    """Whether this worker got ``source``'s advisory lock; held (on a connection of its own)
    until the block ends."""
    lock_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with lock_engine.connect() as lock_conn:
        key = {"a": LOCK_NAMESPACE, "b": lock_key(source)}
        if not await lock_conn.scalar(sa.text("SELECT pg_try_advisory_lock(:a, :b)"), key):
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(Exception):
                await lock_conn.execute(sa.text("SELECT pg_advisory_unlock(:a, :b)"), key)


async def open_run(
    conn: AsyncConnection, source: SourceType, run_id: uuid.UUID, worker_id: str
) -> None:
    """Close ``source``'s runs left running by a dead worker (the caller holds the source's
    lock), then open run ``run_id``."""
    closed = await conn.execute(
        runs.update()
        .where(runs.c.source_type == source, runs.c.status == "running")
        .values(status="interrupted", finished_at=sa.func.now(), error=DEAD_RUN_ERROR)
        .returning(runs.c.id)
    )
    for (dead,) in closed.all():
        log.warning(
            "closed a run left running by a dead worker",
            extra={"event": "run_closed_interrupted", "source": source, "run_id": str(dead)},
        )
    await conn.execute(
        runs.insert().values(id=run_id, source_type=source, worker_id=worker_id, status="running")
    )


# Once per batch, like the cursor (checkpoints.save_cursor): a prepared asyncpg statement.
_ADD_RUN_COUNTS = f"""
UPDATE runs SET {", ".join(f"{f} = {f} + ${i}::bigint" for i, f in enumerate(COUNTERS, 2))},
    warnings = warnings || ${len(COUNTERS) + 2}::text[], heartbeat_at = now()
WHERE id = $1::uuid
"""


async def add_run_counts(
    driver: Any, run_id: uuid.UUID, counts: BatchCounts, warnings: list[str]
) -> None:
    values = counts.as_dict()
    await driver.execute(_ADD_RUN_COUNTS, run_id, *(values[f] for f in COUNTERS), warnings)


async def close_run(conn: Any, outcome: RunOutcome) -> None:
    """Write how the run ended, unless it is no longer running (closed as a dead worker's)."""
    await conn.execute(
        runs.update()
        .where(runs.c.id == outcome.run_id, runs.c.status == "running")
        .values(status=outcome.status, finished_at=outcome.ended_at, error=outcome.error)
    )
