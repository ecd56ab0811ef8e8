"""Runs written the worker's way, with chosen times: for tests of data age, run staleness and
metrics that need a history *now* (the package's shared fixture lies in the past)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources.base import SNAPSHOT, Batch, MarketRecord, NewsRecord, Record, SourceType
from tests.integration.api.conftest import sql
from tests.pg import TestDatabase

SOURCES: tuple[SourceType, ...] = ("csv", "coinpaprika", "coingecko", "rss")
# What the `recent` fixture (conftest.py) gives: its database, an engine on it, an app client.
Recent = tuple[TestDatabase, AsyncEngine, httpx.AsyncClient]


def records_at(source: SourceType, at: datetime, n: int = 3) -> list[Record]:
    """``n`` records of ``source``, the newest observed at ``at``."""
    if source == "rss":
        return [
            NewsRecord(
                source_type="rss",
                source_id=f"https://news.example/{at.timestamp()}/{k}",
                title=f"Bitcoin news {k}",
                url=f"https://news.example/{k}",
                source_timestamp=at - timedelta(minutes=k),
            )
            for k in range(n)
        ]
    snapshot = source != "csv"
    return [
        MarketRecord(
            source_type=source,
            venue=source if snapshot else "testex",
            symbol="BTC",
            quote="USD",
            interval=SNAPSHOT if snapshot else "1h",
            name="Bitcoin",
            coin_id={"coingecko": "bitcoin", "coinpaprika": "btc-bitcoin"}.get(source),
            price=50_000.0 + k,
            source_timestamp=at - timedelta(hours=k),
        )
        for k in range(n)
    ]


@dataclass(frozen=True)
class Run:
    source: SourceType
    status: str = "success"
    ended_ago: timedelta = timedelta(seconds=5)  # before now
    seconds: float = 2.0
    data_at: datetime | None = None  # the newest record's upstream time; None: no records
    error: str | None = None


async def write_run(db: TestDatabase, engine: AsyncEngine, run: Run) -> uuid.UUID:
    """One run of ``run.source``: its records through the store, then its end recorded in
    ``runs`` and ``checkpoints`` as the runner does."""
    run_id = uuid.uuid4()
    finished = datetime.now(UTC) - run.ended_ago
    started = finished - timedelta(seconds=run.seconds)
    sql(
        db,
        "INSERT INTO runs (id, source_type, started_at, heartbeat_at, worker_id) "
        "VALUES (%s, %s, %s, %s, 'scenario')",
        run_id,
        run.source,
        started,
        started,
    )
    records = records_at(run.source, run.data_at) if run.data_at else []
    resolver = AssetResolver()
    async with engine.begin() as conn:
        await resolver.ensure_seed(conn)
        batch = Batch(records=records, processed=len(records), cursor={"at": str(finished)})
        await Writer(resolver).write_batch(conn, run.source, run_id, batch)
    ok = run.status == "success"
    sql(
        db,
        "UPDATE runs SET status = %s, finished_at = %s, error = %s WHERE id = %s",
        run.status,
        finished,
        run.error,
        run_id,
    )
    sql(
        db,
        "UPDATE checkpoints SET status = %s, last_run_id = %s, "
        "last_success_at = CASE WHEN %s THEN %s ELSE last_success_at END, "
        "last_failure_at = CASE WHEN %s = 'failed' THEN %s ELSE last_failure_at END, "
        "last_error = %s WHERE source_type = %s",
        run.status,
        run_id,
        ok,
        finished,
        run.status,
        finished,
        run.error,
        run.source,
    )
    return run_id


async def fresh_everywhere(
    db: TestDatabase, engine: AsyncEngine, data_age: timedelta = timedelta(minutes=1)
) -> datetime:
    """Every source: one successful run that just ended, its data ``data_age`` old."""
    at = datetime.now(UTC) - data_age
    for source in SOURCES:
        await write_run(db, engine, Run(source, data_at=at))
    return at
