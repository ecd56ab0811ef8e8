"""Writing one batch: raw → series → observations → news → rejects → drift → checkpoint → run.

Everything for a batch happens in the caller's transaction, so the checkpoint advances exactly
when the rows it covers are committed.

How market observations and news items are upserted (and what counts as unchanged) is
:mod:`cryptoetl.pipeline.upsert`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptoetl.db.notify import NOTIFY_DATA_CHANGED
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.raw import prefer_lz4, store_raw
from cryptoetl.pipeline.rejects import store_drift, store_rejects
from cryptoetl.pipeline.series import SeriesResolver
from cryptoetl.pipeline.upsert import upsert_news, upsert_observations
from cryptoetl.sources.base import Batch, DriftEvent, MarketRecord, NewsRecord, SourceType

_json = msgspec.json.Encoder()


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


class Writer:
    """The worker's write path: asset and series resolution, cached across batches."""

    def __init__(self, assets: AssetResolver) -> None:
        self.assets = assets
        self.series = SeriesResolver(assets)

    def forget(self) -> None:
        """After a rolled-back batch, cached ids may name rows that were never committed."""
        self.series.forget()

    async def write_batch(
        self, conn: AsyncConnection, source: SourceType, run_id: uuid.UUID, batch: Batch
    ) -> tuple[BatchCounts, list[DriftEvent]]:
        """Write a whole batch and its checkpoint in the caller's (single) transaction."""
        counts = BatchCounts(processed=batch.processed)
        driver = await _driver(conn)
        await prefer_lz4(driver)
        counts.raw_stored = await store_raw(driver, source, run_id, batch.raw)
        market = [r for r in batch.records if isinstance(r, MarketRecord)]
        news = [r for r in batch.records if isinstance(r, NewsRecord)]
        inserted, updated = await upsert_observations(driver, self.series, source, market)
        news_inserted, news_updated = await upsert_news(driver, self.assets, run_id, news)
        counts.inserted, counts.updated = inserted + news_inserted, updated + news_updated
        # Duplicates inside the batch count as unchanged: they were looked at, not written twice.
        counts.unchanged = len(batch.records) - counts.inserted - counts.updated
        if counts.inserted or counts.updated:
            # Delivered at commit (never for a rolled-back batch): the API drops its cached
            # responses that read this source.
            await driver.execute(NOTIFY_DATA_CHANGED, source)
        counts.rejected = await store_rejects(driver, source, run_id, batch.rejects)
        new_drift = await store_drift(conn, source, run_id, batch.drift)
        counts.drift_events = len(new_drift)
        if batch.cursor is not None:
            await save_cursor(driver, source, run_id, batch.cursor)
        await add_run_counts(driver, run_id, counts, batch.warnings)
        return counts, new_drift


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside the caller's transaction.

    SQLAlchemy begins its transaction lazily, on the first statement it runs: a trivial statement
    goes through SQLAlchemy first, so whatever runs on the driver afterwards is in that same
    transaction (never in autocommit).
    """
    await conn.exec_driver_sql("SELECT 1")
    raw_conn = await conn.get_raw_connection()
    driver = raw_conn.driver_connection
    assert driver is not None
    return driver


# The per-batch bookkeeping runs once per batch: prepared asyncpg statements, not SQLAlchemy
# constructs compiled each time (that was most of a batch's fixed cost).
_SAVE_CURSOR = """
INSERT INTO checkpoints (source_type, cursor, status, last_run_id)
VALUES ($1::text, $2::text::jsonb, 'running', $3::uuid)
ON CONFLICT (source_type) DO UPDATE SET cursor = excluded.cursor,
    last_run_id = excluded.last_run_id, updated_at = now()
"""
_ADD_RUN_COUNTS = f"""
UPDATE runs SET {", ".join(f"{f} = {f} + ${i}::bigint" for i, f in enumerate(COUNTERS, 2))},
    warnings = warnings || ${len(COUNTERS) + 2}::text[], heartbeat_at = now()
WHERE id = $1::uuid
"""


async def save_cursor(
    driver: Any, source: SourceType, run_id: uuid.UUID, cursor: dict[str, Any]
) -> None:
    await driver.execute(_SAVE_CURSOR, source, _json.encode(cursor).decode(), run_id)


async def add_run_counts(
    driver: Any, run_id: uuid.UUID, counts: BatchCounts, warnings: list[str]
) -> None:
    values = counts.as_dict()
    await driver.execute(_ADD_RUN_COUNTS, run_id, *(values[f] for f in COUNTERS), warnings)
