"""Writing one batch: raw → series → observations → news → rejects → drift → checkpoint → run.

Everything for a batch happens in the caller's transaction, so the checkpoint advances exactly
when the rows it covers are committed.

How market observations and news items are upserted (and what counts as unchanged) is
:mod:`cryptoetl.pipeline.upsert`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cryptoetl.db.notify import NOTIFY_DATA_CHANGED
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.checkpoints import save_cursor
from cryptoetl.pipeline.raw import prefer_lz4, store_raw
from cryptoetl.pipeline.rejects import store_drift, store_rejects
from cryptoetl.pipeline.runs import BatchCounts, add_run_counts
from cryptoetl.pipeline.series import SeriesResolver
from cryptoetl.pipeline.upsert import upsert_news, upsert_observations
from cryptoetl.sources.base import Batch, DriftEvent, MarketRecord, NewsRecord, SourceType


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
