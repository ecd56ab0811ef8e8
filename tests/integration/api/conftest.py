"""API fixtures: data written the worker's way, and an app logged in as the read-only login.

``api_data`` fills the session database once for the whole package through
:func:`cryptoetl.pipeline.store.write_batch` with an :class:`AssetResolver` (the worker's own
write path): market rows from coingecko, coinpaprika and csv (bitcoin from each), rss news
mentioning Bitcoin, plus run history and checkpoints. Tests treat that data as read-only;
the few that change bookkeeping rows restore them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.api.app import create_app
from cryptoetl.config import DatabaseUrl, load_settings
from cryptoetl.db.engine import make_engine
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources.base import (
    SNAPSHOT,
    Batch,
    DriftEvent,
    MarketRecord,
    NewsRecord,
    RawPayload,
    Record,
    Reject,
    SourceType,
)
from tests.pg import TestDatabase, fresh_database, truncate_all

# All source timestamps hang off T0 (well in the past, so "now" never collides).
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SQLI = "'; DROP TABLE records; --"


@dataclass
class ApiData:
    """What the fill wrote, for tests to compare against."""

    runs: dict[str, list[uuid.UUID]] = field(default_factory=dict)  # oldest first
    btc_id: int = 0
    eth_id: int = 0
    total: int = 0


def sql(db: TestDatabase, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run SQL as the superuser (autocommit)."""
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return list(cur.fetchall()) if cur.description else []


def _truncate(db: TestDatabase) -> None:
    tables = [
        row[0]
        for row in sql(
            db,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'",
        )
    ]
    sql(db, f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


# --- batches -------------------------------------------------------------------------------------


def _market(source: SourceType, coin_id: str | None, symbol: str, name: str, **kw: Any) -> Any:
    """A record in the units these fixtures give: USD, candles of 1h for CSV."""
    renamed = {
        "price_usd": "price",
        "market_cap_usd": "market_cap",
        "volume_24h_usd": "volume_quote",
        "change_24h_pct": "change_pct",
    }
    values = {renamed.get(key, key): value for key, value in kw.items()}
    snapshot = source != "csv"
    return MarketRecord(
        source_type=source,
        venue=source if snapshot else "testex",
        symbol=symbol.upper(),
        quote="USD",
        interval=SNAPSHOT if snapshot else "1h",
        name=name,
        coin_id=coin_id,
        **values,
    )


def coingecko_records() -> list[Record]:
    records: list[Record] = [
        _market(
            "coingecko",
            "bitcoin",
            "btc",
            "Bitcoin",
            price_usd=50_000.0,
            market_cap_usd=9.8e11,
            volume_24h_usd=3.1e10,
            change_24h_pct=1.5,
            rank=1,
            source_timestamp=T0,
            metadata={"last_updated": "2025-03-01T12:00:00Z"},
        ),
        _market(
            "coingecko",
            "ethereum",
            "eth",
            "Ethereum",
            price_usd=3_000.0,
            rank=2,
            source_timestamp=T0,
        ),  # same instant as bitcoin: a tie broken by id
        _market(
            "coingecko",
            "tether",
            "usdt",
            "Tether",
            price_usd=1.0,
            rank=3,
            source_timestamp=T0 - timedelta(minutes=1),
        ),
    ]
    for k in range(20):
        records.append(
            _market(
                "coingecko",
                f"gecko-coin-{k}",
                f"gc{k}",
                f"Gecko Coin {k}",
                price_usd=1.0 + k,
                rank=10 + k,
                source_timestamp=T0 - timedelta(minutes=2 + k // 2),
            )
        )
    return records


def coinpaprika_records() -> list[Record]:
    records: list[Record] = [
        _market(
            "coinpaprika",
            "btc-bitcoin",
            "BTC",
            "Bitcoin",
            price_usd=50_500.0,
            rank=1,
            source_timestamp=T0 - timedelta(seconds=30),
        ),
        _market(
            "coinpaprika",
            "eth-ethereum",
            "ETH",
            "Ethereum",
            price_usd=3_010.0,
            rank=2,
            source_timestamp=T0 - timedelta(seconds=30),
        ),
    ]
    for k in range(20):
        records.append(
            _market(
                "coinpaprika",
                f"pc{k}-paprika-coin-{k}",
                f"PC{k}",
                f"Paprika Coin {k}",
                price_usd=2.0 + k,
                source_timestamp=T0 - timedelta(minutes=3 + k // 3),
            )
        )
    return records


def csv_records() -> list[Record]:
    records: list[Record] = []
    for k in range(30):
        ts = T0 - timedelta(hours=1 + k)
        records.append(
            _market(
                "csv",
                None,
                "BTC",
                "Bitcoin",
                price_usd=49_000.0 - k * 10,
                source_timestamp=ts,
            )
        )
    for k in range(10):
        ts = T0 - timedelta(hours=1 + k)
        records.append(
            _market(
                "csv",
                None,
                "ETH",
                "Ethereum",
                price_usd=2_900.0 + k,
                source_timestamp=ts,
            )
        )
    return records


NEWS_TITLES = [
    "Bitcoin tops $50,000 as ETF inflows grow",
    "Ethereum developers schedule the next upgrade",
    "Regulators weigh new stablecoin rules",
    "Bitcoin miners adjust after the halving",
    "Solana network sees record activity",
]


def rss_records() -> list[Record]:
    records: list[Record] = []
    for k in range(25):
        title = f"{NEWS_TITLES[k % len(NEWS_TITLES)]} (part {k})"
        records.append(
            NewsRecord(
                source_type="rss",
                source_id=f"https://news.example/{k}",
                title=title,
                summary=f"Report {k}: analysts discuss liquidity and on-chain activity.",
                url=f"https://news.example/{k}",
                author="Alice Chen" if k % 2 else "Bob Ortiz",
                tags=("crypto", "markets") if k % 2 else ("crypto",),
                category="markets" if k % 3 else "policy",
                source_timestamp=T0 - timedelta(minutes=5 * k),
                metadata={"feed": "https://news.example/rss"},
            )
        )
    return records


BATCHES: dict[SourceType, Any] = {
    "coingecko": coingecko_records,
    "coinpaprika": coinpaprika_records,
    "csv": csv_records,
    "rss": rss_records,
}


# --- runs ----------------------------------------------------------------------------------------

# Historic runs per source: (status, processed, duration_s), oldest first; the last one is
# the run that writes the batch (its counts come from write_batch).
HISTORY: dict[str, list[tuple[str, int, float]]] = {
    "coingecko": [("success", 100 + d, 10.0 + d / 10) for d in (0, 2, -1, 1, -2, 0, 1, -1, 2, 0)],
    "coinpaprika": [("success", 22, 5.0), ("success", 22, 5.5), ("success", 21, 5.2)],
    "csv": [("success", 40, 1.0), ("success", 40, 1.1)],
    "rss": [("success", 25, 2.0)],
}
# How the batch-writing run ends: coingecko slow and small (anomalies), coinpaprika fails.
FINAL: dict[str, tuple[str, float, str | None]] = {
    "coingecko": ("success", 120.0, None),
    "coinpaprika": ("failed", 4.0, "HTTPStatusError: 502 from upstream"),
    "csv": ("success", 1.2, None),
    "rss": ("success", 2.1, None),
}


def _insert_run(
    db: TestDatabase, source: str, started: datetime, status: str, processed: int, seconds: float
) -> uuid.UUID:
    run_id = uuid.uuid4()
    sql(
        db,
        "INSERT INTO runs (id, source_type, started_at, finished_at, heartbeat_at, status, "
        "worker_id, processed, inserted) VALUES (%s, %s, %s, %s, %s, %s, 'test-worker', %s, %s)",
        run_id,
        source,
        started,
        started + timedelta(seconds=seconds),
        started + timedelta(seconds=seconds),
        status,
        processed,
        processed,
    )
    return run_id


async def _write(
    engine: AsyncEngine, resolver: AssetResolver, source: SourceType, run_id: uuid.UUID
) -> None:
    records = BATCHES[source]()
    batch = Batch(
        raw=[RawPayload(source_key=f"{source}:page-1", payload={"n": len(records)})],
        records=records,
        processed=len(records) + (1 if source == "coingecko" else 0),
        cursor={"page": 1},
    )
    if source == "coingecko":
        batch.rejects.append(
            Reject(source_key="coingecko:bad", payload={"id": None}, reason="missing id")
        )
        batch.drift.append(DriftEvent(field="new_field", change="added", observed_type="str"))
    async with engine.begin() as conn:
        await Writer(resolver).write_batch(conn, source, run_id, batch)


def _finish(db: TestDatabase, source: str, run_id: uuid.UUID, started: datetime) -> None:
    status, seconds, error = FINAL[source]
    finished = started + timedelta(seconds=seconds)
    sql(
        db,
        "UPDATE runs SET status = %s, finished_at = %s, error = %s WHERE id = %s",
        status,
        finished,
        error,
        run_id,
    )
    ok = status == "success"
    sql(
        db,
        "UPDATE checkpoints SET status = %s, last_run_id = %s, last_success_at = %s, "
        "last_failure_at = %s, last_error = %s, last_run_processed = "
        "(SELECT processed FROM runs WHERE id = %s), records_total = "
        "(SELECT count(*) FROM records WHERE source_type = %s) "
        "WHERE source_type = %s",
        status,
        run_id,
        finished if ok else finished - timedelta(hours=1),
        None if ok else finished,
        error,
        run_id,
        source,
        source,
    )


async def fill(db: TestDatabase, engine: AsyncEngine) -> ApiData:
    _truncate(db)
    resolver = AssetResolver()
    async with engine.begin() as conn:
        await resolver.ensure_seed(conn)
    result = ApiData()
    now = datetime.now(UTC)
    for source, history in HISTORY.items():
        runs = result.runs[source] = []
        for k, (status, processed, seconds) in enumerate(history):
            started = now - timedelta(hours=len(history) + 2 - k)
            runs.append(_insert_run(db, source, started, status, processed, seconds))
        started = now - timedelta(minutes=10)
        run_id = _insert_run(db, source, started, "running", 0, 0)
        sql(db, "UPDATE runs SET finished_at = NULL WHERE id = %s", run_id)
        await _write(engine, resolver, source, run_id)  # type: ignore[arg-type]
        _finish(db, source, run_id, started)
        runs.append(run_id)
    ids = dict(sql(db, "SELECT slug, id FROM assets WHERE slug IN ('bitcoin', 'ethereum')"))
    result.btc_id, result.eth_id = int(ids["bitcoin"]), int(ids["ethereum"])
    result.total = int(sql(db, "SELECT count(*) FROM records")[0][0])
    sql(db, "ANALYZE")  # planner estimates (for estimated totals) from real statistics
    return result


@pytest.fixture(scope="package")
async def api_data(database: TestDatabase, engine: AsyncEngine) -> ApiData:
    return await fill(database, engine)


@pytest.fixture(scope="package")
def api_app(database: TestDatabase, api_data: ApiData) -> Litestar:
    """The app as deployed: API_DATABASE_URL is the read-only login."""
    return create_app(load_settings(database.env()))


@contextlib.asynccontextmanager
async def api_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in this event loop (Litestar's AsyncTestClient runs the
    app in a thread of its own, which would split the app's connections across loops)."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # (ASGI typing differs)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        db = app.state.db
        await db.dispose()


@pytest.fixture(scope="package")
async def client(api_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(api_app) as test_client:
        yield test_client


def body(response: Any) -> Any:
    """Decode JSON strictly (msgspec raises on anything that is not valid JSON)."""
    return msgspec.json.decode(response.content)


@pytest.fixture
def restore_bookkeeping(database: TestDatabase) -> Iterator[None]:
    """For tests that edit checkpoints/runs: put the rows back afterwards."""
    checkpoints = sql(database, "SELECT * FROM checkpoints")
    columns = [
        r[0]
        for r in sql(
            database,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'checkpoints' ORDER BY ordinal_position",
        )
    ]
    yield
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute("DELETE FROM checkpoints")
        placeholders = ", ".join(["%s"] * len(columns))
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO checkpoints ({', '.join(columns)}) VALUES ({placeholders})",
                [
                    tuple(psycopg.types.json.Jsonb(v) if isinstance(v, dict) else v for v in row)
                    for row in checkpoints
                ],
            )


# --- a database of its own, for histories of *now* (see scenario.py) ----------------------------


@pytest.fixture(scope="package")
def recent_database(pg_server: str) -> Iterator[TestDatabase]:
    with fresh_database(pg_server) as db:
        yield db


@pytest.fixture(scope="package")
async def recent_engine(recent_database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(DatabaseUrl(recent_database.admin_url, "TEST_DATABASE_URL"))
    yield eng
    await eng.dispose()


@pytest.fixture
async def recent(
    recent_database: TestDatabase, recent_engine: AsyncEngine
) -> AsyncIterator[tuple[TestDatabase, AsyncEngine, httpx.AsyncClient]]:
    """An empty database and an app on it; the test writes the history it needs."""
    truncate_all(recent_database)
    async with api_client(create_app(load_settings(recent_database.env()))) as c:
        yield recent_database, recent_engine, c
