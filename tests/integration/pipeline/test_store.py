"""The write path on a real PostgreSQL: series identity, the two observation paths (COPY when the
series bounds prove rows new, upsert otherwise), exact counts and bounds, the one rule for
duplicates inside a batch, rejects stored once, news counts, and atomicity with the checkpoint."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.runs import BatchCounts
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources.base import Batch, MarketRecord, NewsRecord, Reject
from tests.pg import KEPT_TOTAL_SQL, TestDatabase

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def candle(
    hour: int,
    price: float = 100.0,
    *,
    venue: str = "binance",
    quote: str | None = "USDT",
    interval: str | None = "1h",
    symbol: str = "BTC",
) -> MarketRecord:
    return MarketRecord(
        source_type="csv",
        venue=venue,
        symbol=symbol,
        quote=quote,
        interval=interval,
        price=price,
        open=price - 1,
        source_timestamp=T0 + timedelta(hours=hour),
    )


def query(db: TestDatabase, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        cursor = conn.execute(sql, params or None)
        return list(cursor.fetchall()) if cursor.description else []


class Harness:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.writer = Writer(AssetResolver())

    async def run(self, source: str = "csv") -> uuid.UUID:
        run_id = uuid.uuid4()
        async with self.engine.begin() as conn:
            await self.writer.assets.ensure_seed(conn)
            await conn.exec_driver_sql(
                "INSERT INTO runs (id, source_type, worker_id) "
                f"VALUES ('{run_id}', '{source}', 'test')"
            )
        return run_id

    async def write(self, run_id: uuid.UUID, batch: Batch, source: str = "csv") -> BatchCounts:
        async with self.engine.begin() as conn:
            counts, _ = await self.writer.write_batch(conn, source, run_id, batch)  # type: ignore[arg-type]
        return counts


@pytest.fixture
def harness(engine: AsyncEngine, clean_db: TestDatabase) -> Harness:
    return Harness(engine)


def series_state(db: TestDatabase) -> dict[str, tuple[int, datetime | None, datetime | None]]:
    rows = query(db, "SELECT key, observations, first_ts, last_ts FROM market_series")
    return {key: (n, first, last) for key, n, first, last in rows}


def assert_kept_counts_exact(db: TestDatabase) -> None:
    actual = query(
        db,
        "SELECT s.key, count(o.*), min(o.source_timestamp), max(o.source_timestamp) "
        "FROM market_series s LEFT JOIN market_observations o ON o.series_id = s.id "
        "GROUP BY s.key",
    )
    assert series_state(db) == {key: (n, first, last) for key, n, first, last in actual}
    total = query(db, "SELECT count(*) FROM records")[0][0]
    assert query(db, KEPT_TOTAL_SQL)[0][0] == total


async def test_series_keep_apart_what_differs_and_merge_what_is_the_same(
    harness: Harness, database: TestDatabase
) -> None:
    run = await harness.run()
    batch = [candle(0), candle(0, venue="gemini", quote="USD"), candle(0, interval="1d")]
    counts = await harness.write(run, Batch(records=batch, processed=3))
    assert (counts.inserted, counts.updated, counts.unchanged) == (3, 0, 0)
    assert set(series_state(database)) == {
        "binance:BTC/USDT:1h",
        "gemini:BTC/USD:1h",
        "binance:BTC/USDT:1d",
    }
    # A second export of one series upserts onto its rows: same values, no write at all.
    again = await harness.write(run, Batch(records=[candle(0), candle(1)], processed=2))
    assert (again.inserted, again.updated, again.unchanged) == (1, 0, 1)
    # All three series are one asset: the coin, whatever its venue or quote.
    assert query(database, "SELECT count(DISTINCT asset_id) FROM market_series") == [(1,)]
    assert_kept_counts_exact(database)


async def test_unknown_quote_is_a_series_of_its_own(
    harness: Harness, database: TestDatabase
) -> None:
    run = await harness.run()
    await harness.write(run, Batch(records=[candle(0, quote=None), candle(0, quote="USD")]))
    assert set(series_state(database)) == {"binance:BTC/?:1h", "binance:BTC/USD:1h"}
    rows = query(database, "SELECT quote, price_usd FROM records ORDER BY quote NULLS FIRST")
    assert rows == [(None, None), ("USD", 100.0)]  # only a USD quote gives a USD price


async def test_rows_outside_the_bounds_are_copied_inside_are_upserted(
    harness: Harness, database: TestDatabase
) -> None:
    run = await harness.run()
    first = await harness.write(run, Batch(records=[candle(h) for h in range(10, 20)]))
    assert first.inserted == 10
    # Older and newer than everything stored: proven new (a newest-first file, an append).
    older = await harness.write(run, Batch(records=[candle(h) for h in range(0, 10)]))
    newer = await harness.write(run, Batch(records=[candle(h) for h in range(20, 25)]))
    assert (older.inserted, newer.inserted) == (10, 5)
    # Inside the bounds: a corrected value updates, an unchanged one costs nothing.
    fixed = await harness.write(run, Batch(records=[candle(12, 99.5), candle(13)]))
    assert (fixed.inserted, fixed.updated, fixed.unchanged) == (0, 1, 1)
    assert query(database, "SELECT price FROM records WHERE source_id LIKE '%%T12:00:00Z'") == [
        (99.5,)
    ]
    assert series_state(database)["binance:BTC/USDT:1h"] == (
        25,
        T0,
        T0 + timedelta(hours=24),
    )
    assert_kept_counts_exact(database)


async def test_rows_written_behind_the_stores_back_fall_back_to_the_upsert(
    harness: Harness, database: TestDatabase
) -> None:
    """Bounds that lie (a row inserted by hand outside them) cost a savepoint, never an error
    or a duplicate."""
    run = await harness.run()
    await harness.write(run, Batch(records=[candle(5)]))
    (series_id,) = query(database, "SELECT id FROM market_series")[0]
    query(
        database,
        "INSERT INTO market_observations_csv (series_id, source_timestamp, price) "
        "VALUES (%s, %s, 1.0)",
        series_id,
        T0 + timedelta(hours=9),
    )
    counts = await harness.write(run, Batch(records=[candle(8), candle(9, 42.0)]))
    assert (counts.inserted, counts.updated) == (1, 1)
    assert query(database, "SELECT count(*), max(price) FROM market_observations") == [(3, 100.0)]
    prices = query(database, "SELECT price FROM market_observations ORDER BY source_timestamp")
    assert prices == [(100.0,), (100.0,), (42.0,)]


async def test_duplicates_inside_a_batch_the_later_wins(
    harness: Harness, database: TestDatabase
) -> None:
    run = await harness.run()
    counts = await harness.write(run, Batch(records=[candle(1, 10.0), candle(1, 11.0)]))
    assert (counts.inserted, counts.unchanged) == (1, 1)
    assert query(database, "SELECT price FROM market_observations") == [(11.0,)]
    news = [
        NewsRecord(source_type="rss", source_id="a", title="first", source_timestamp=T0),
        NewsRecord(source_type="rss", source_id="a", title="second", source_timestamp=T0),
    ]
    rss = await harness.run("rss")
    counts = await harness.write(rss, Batch(records=news), "rss")
    assert (counts.inserted, counts.unchanged) == (1, 1)
    assert query(database, "SELECT title FROM news_items") == [("second",)]


async def test_snapshots_keep_history_when_last_updated_moves(
    harness: Harness, database: TestDatabase
) -> None:
    def snapshot(minute: int, price: float) -> MarketRecord:
        return MarketRecord(
            source_type="coingecko",
            venue="coingecko",
            symbol="BTC",
            quote="USD",
            interval="snapshot",
            coin_id="bitcoin",
            name="Bitcoin",
            price=price,
            source_timestamp=T0 + timedelta(minutes=minute),
        )

    run = await harness.run("coingecko")
    for minute, price in ((0, 1.0), (0, 1.0), (5, 2.0), (10, 3.0), (10, 3.0)):
        await harness.write(run, Batch(records=[snapshot(minute, price)]), "coingecko")
    rows = query(database, "SELECT price FROM records ORDER BY source_timestamp")
    assert rows == [(1.0,), (2.0,), (3.0,)]  # unchanged snapshots cost nothing
    assert query(database, "SELECT slug FROM assets a JOIN market_series s ON s.asset_id = a.id")[
        0
    ] == ("bitcoin",)


async def test_a_reread_does_not_store_its_rejects_again(
    harness: Harness, database: TestDatabase
) -> None:
    bad = [Reject(source_key="/data/x.csv:7", payload={"row": ["?"]}, reason="bad date")]
    for _ in range(3):
        run = await harness.run()
        counts = await harness.write(run, Batch(rejects=bad, processed=1))
        assert counts.rejected == 1  # the run still says it rejected the row
    assert query(database, "SELECT count(*) FROM rejected_records") == [(1,)]
    other = [Reject(source_key="/data/x.csv:7", payload={"row": ["!"]}, reason="bad date")]
    await harness.write(run, Batch(rejects=other, processed=1))
    assert query(database, "SELECT count(*) FROM rejected_records") == [(2,)]


async def test_news_counts_follow_mentions(harness: Harness, database: TestDatabase) -> None:
    run = await harness.run("rss")
    items = [
        NewsRecord(source_type="rss", source_id=str(k), title=title, source_timestamp=T0)
        for k, title in enumerate(["Bitcoin jumps", "DOT Sinks 2% After Breaking Key Support"])
    ]
    await harness.write(run, Batch(records=items), "rss")
    counts = dict(
        query(
            database,
            "SELECT a.slug, c.n FROM news_counts c LEFT JOIN assets a ON a.id = c.asset_id",
        )
    )
    assert counts == {None: 2, "bitcoin": 1, "polkadot": 1}  # tickers in headlines count


async def test_a_failed_batch_leaves_no_trace_and_no_stale_cache(
    harness: Harness, engine: AsyncEngine, database: TestDatabase
) -> None:
    """Everything of a batch (series, observations, checkpoint, counts) commits or none of it;
    after a rollback the writer's caches must not name series that never were."""
    run = await harness.run()

    async def write_then_fail() -> None:
        async with engine.begin() as conn:
            await harness.writer.write_batch(
                conn, "csv", run, Batch(records=[candle(0, symbol="NEWCOIN")], cursor={"n": 1})
            )
            raise RuntimeError("the database went away before the commit")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    harness.writer.forget()
    assert query(database, "SELECT count(*) FROM market_series") == [(0,)]
    assert query(database, "SELECT count(*) FROM checkpoints") == [(0,)]
    counts = await harness.write(run, Batch(records=[candle(0, symbol="NEWCOIN")]))
    assert counts.inserted == 1
    assert_kept_counts_exact(database)
