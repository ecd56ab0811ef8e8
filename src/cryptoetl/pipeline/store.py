"""Writing one batch: raw → assets → normalized upsert → rejects → drift → checkpoint → run.

Everything for a batch happens in the caller's transaction, so the checkpoint advances exactly
when the rows it covers are committed. The normalized upsert is the one bulk write routine of
the project: COPY into a temporary staging table, then one ``INSERT … SELECT … ON CONFLICT``
that skips rows whose content hash did not change (counted as unchanged, no write).

Speed (measured with bench/ingest_bench.py): raw payloads and records are encoded once with
msgspec (the canonical bytes give the content hash and are what PostgreSQL parses), the COPY
carries only the columns a kind uses, raw payloads go in one ``unnest`` statement with lz4
TOAST compression, and the staging sort is skipped when a batch has no repeated identity. What
remains is PostgreSQL's own per-row work on ``records`` (five B-tree indexes, the foreign key
to ``assets``, the count triggers): a 1M-row CSV load is bound by it.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptoetl.db.tables import RAW_TABLES, checkpoints, drift_events, rejected_records, runs
from cryptoetl.pipeline.assets import AssetResolver, mapping_key
from cryptoetl.sources.base import (
    Batch,
    DriftEvent,
    MarketRecord,
    NewsRecord,
    RawPayload,
    Record,
    Reject,
    SourceType,
    canonical_json,
    content_hash,
)

_json = msgspec.json.Encoder()

# Staging: every column the upsert writes except the per-batch constants (run id, kind), which
# are statement parameters. Market rows, the bulk, are COPY'd with MARKET_COLUMNS only (news
# columns keep their defaults); news rows with NEWS_COLUMNS. Fewer values per row is less work
# for the COPY encoder, which is most of the Python cost of a large load.
MARKET_COLUMNS = (
    "source_type",
    "source_id",
    "asset_id",
    "symbol",
    "price_usd",
    "market_cap_usd",
    "volume_24h_usd",
    "change_24h_pct",
    "rank",
    "title",
    "source_timestamp",
    "content_hash",
    "metadata",
)
NEWS_COLUMNS = (
    "source_type",
    "source_id",
    "title",
    "summary",
    "url",
    "author",
    "category",
    "tags",
    "mentioned_asset_ids",
    "source_timestamp",
    "content_hash",
    "metadata",
)
# Columns of `records` written by the upsert, taken from staging (kind and run_id are not).
STAGED_COLUMNS = tuple(dict.fromkeys((*MARKET_COLUMNS, *NEWS_COLUMNS)))
RECORD_COLUMNS = ("kind", *STAGED_COLUMNS, "run_id")
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS records_staging (
    seq serial, source_type text, source_id text, asset_id bigint, symbol text,
    price_usd float8, market_cap_usd float8, volume_24h_usd float8, change_24h_pct float8,
    rank int, title text, summary text, url text, author text, category text,
    tags text[] NOT NULL DEFAULT '{}', mentioned_asset_ids bigint[] NOT NULL DEFAULT '{}',
    source_timestamp timestamptz, content_hash bytea, metadata jsonb
) ON COMMIT DELETE ROWS
"""
_UPDATABLE = [c for c in RECORD_COLUMNS if c not in ("source_type", "source_id")]
_STAGED = ", ".join(STAGED_COLUMNS)
_UPSERT_TAIL = f"""
INSERT INTO records ({", ".join(RECORD_COLUMNS)})
    SELECT $1::text, {_STAGED}, $2::uuid FROM staged
    ON CONFLICT (source_type, source_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in _UPDATABLE)}, updated_at = now()
    WHERE records.content_hash IS DISTINCT FROM excluded.content_hash
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
"""
# The later of two staged rows with one identity wins (one INSERT cannot touch a row twice).
_UPSERT_DEDUP = f"""
WITH staged AS (
    SELECT DISTINCT ON (source_type, source_id) {_STAGED}
    FROM records_staging ORDER BY source_type, source_id, seq DESC
), written AS ({_UPSERT_TAIL}"""
# Every identity staged once (checked in Python): no sort needed.
_UPSERT_UNIQUE = f"""
WITH staged AS (SELECT {_STAGED} FROM records_staging), written AS ({_UPSERT_TAIL}"""
_RAW_INSERT = """
INSERT INTO {table} (run_id, source_key, content_hash, payload)
SELECT $1::uuid, k, h, p::jsonb FROM unnest($2::text[], $3::bytea[], $4::text[]) AS t(k, h, p)
ON CONFLICT (source_key, content_hash) DO NOTHING
"""


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
        for field in self.__dataclass_fields__:
            setattr(self, field, getattr(self, field) + getattr(other, field))

    def as_dict(self) -> dict[str, int]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside the caller's transaction.

    SQLAlchemy begins its transaction lazily, on the first statement it runs: the staging DDL
    goes through SQLAlchemy first, so whatever runs on the driver afterwards is in that same
    transaction (never in autocommit).
    """
    await conn.exec_driver_sql(_STAGING_DDL)
    raw_conn = await conn.get_raw_connection()
    driver = raw_conn.driver_connection
    assert driver is not None
    return driver


# TOAST compression of the large values a batch writes (raw payloads: a CSV batch is one JSON
# document of a few hundred kB). lz4 compresses about 3x faster than PostgreSQL's default pglz
# for a similar size. It is a session setting of the worker's own connections (set once per
# connection, only when the server was built with lz4); readers see no difference.
_LZ4 = (
    "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings "
    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)
_lz4_connections: weakref.WeakSet[Any] = weakref.WeakSet()


async def _prefer_lz4(driver: Any) -> None:
    if driver not in _lz4_connections:
        await driver.fetchval(_LZ4)
        _lz4_connections.add(driver)


def _affected(status: str) -> int:
    """The row count of a command tag such as ``INSERT 0 42``."""
    return int(status.rsplit(" ", 1)[-1])


async def store_raw(
    conn: AsyncConnection,
    source: SourceType,
    run_id: uuid.UUID,
    raw: Sequence[RawPayload],
    driver: Any = None,
) -> int:
    """Insert payloads; identical content for the same key is stored once."""
    if not raw:
        return 0
    keys: list[str] = []
    hashes: list[bytes] = []
    payloads: list[str] = []
    for item in raw:
        # One canonical encoding gives the content hash and the text PostgreSQL parses as jsonb.
        encoded, digest = canonical_json(item.payload)
        keys.append(item.source_key)
        hashes.append(digest)
        payloads.append(encoded.decode())
    driver = driver or await _driver(conn)
    await _prefer_lz4(driver)
    sql = _RAW_INSERT.format(table=RAW_TABLES[source].name)
    return _affected(await driver.execute(sql, run_id, keys, hashes, payloads))


def _market_rows(
    records: Sequence[MarketRecord], asset_ids: dict[tuple[str, str], int]
) -> list[tuple[Any, ...]]:
    """COPY rows in MARKET_COLUMNS order (the hot loop of a large load: locals only)."""
    metadata_json = _json.encode
    return [
        (
            r.source_type,
            r.source_id,
            asset_ids[(r.source_type, mapping_key(r))],
            r.symbol,
            r.price_usd,
            r.market_cap_usd,
            r.volume_24h_usd,
            r.change_24h_pct,
            r.rank,
            r.name,
            r.source_timestamp,
            content_hash(r),
            metadata_json(r.metadata).decode(),
        )
        for r in records
    ]


def _news_rows(
    records: Sequence[NewsRecord], resolver: AssetResolver, fallback_ts: datetime
) -> list[tuple[Any, ...]]:
    return [
        (
            r.source_type,
            r.source_id,
            r.title,
            r.summary,
            r.url,
            r.author,
            r.category,
            list(r.tags),
            resolver.mentions(r.title),
            r.source_timestamp or fallback_ts,
            content_hash(r),
            _json.encode(r.metadata).decode(),
        )
        for r in records
    ]


async def upsert_records(
    conn: AsyncConnection,
    resolver: AssetResolver,
    records: Sequence[Record],
    run_id: uuid.UUID,
    driver: Any = None,
) -> tuple[int, int, int]:
    """Bulk upsert; returns (inserted, updated, unchanged)."""
    market = [r for r in records if isinstance(r, MarketRecord)]
    news = [r for r in records if isinstance(r, NewsRecord)]
    if not (market or news):
        return 0, 0, len(records)
    driver = driver or await _driver(conn)
    inserted = updated = 0
    if market:
        rows = _market_rows(market, await resolver.resolve(conn, market))
        inserted, updated = await _upsert_rows(driver, "market", rows, MARKET_COLUMNS, run_id)
    if news:
        if market:  # staging empties itself at commit; a mixed batch empties it here
            await driver.execute("DELETE FROM records_staging")
        rows = _news_rows(news, resolver, datetime.now(UTC))
        i, u = await _upsert_rows(driver, "news", rows, NEWS_COLUMNS, run_id)
        inserted, updated = inserted + i, updated + u
    # Duplicates inside one batch count as unchanged: they were looked at, not written twice.
    return inserted, updated, len(records) - inserted - updated


async def _upsert_rows(
    driver: Any, kind: str, rows: list[tuple[Any, ...]], columns: tuple[str, ...], run_id: uuid.UUID
) -> tuple[int, int]:
    """COPY rows into staging, then one INSERT … ON CONFLICT; (inserted, updated)."""
    await driver.copy_records_to_table("records_staging", records=rows, columns=columns)
    unique = len({(r[0], r[1]) for r in rows}) == len(rows)
    row = await driver.fetchrow(_UPSERT_UNIQUE if unique else _UPSERT_DEDUP, kind, run_id)
    return int(row[0]), int(row[1])


async def store_rejects(
    conn: AsyncConnection, source: SourceType, run_id: uuid.UUID, rejects: Sequence[Reject]
) -> int:
    if rejects:
        await conn.execute(
            rejected_records.insert(),
            [
                {
                    "source_type": source,
                    "run_id": run_id,
                    "source_key": r.source_key,
                    "payload": msgspec.to_builtins(r.payload),
                    "reason": r.reason,
                }
                for r in rejects
            ],
        )
    return len(rejects)


async def store_drift(
    conn: AsyncConnection, source: SourceType, run_id: uuid.UUID, events: Sequence[DriftEvent]
) -> list[DriftEvent]:
    """Store drift events once per run and field; returns the ones that were new this run."""
    if not events:
        return []
    rows = [
        {
            "source_type": source,
            "run_id": run_id,
            **msgspec.structs.asdict(e),
            "sample": msgspec.to_builtins(e.sample),
        }
        for e in events
    ]
    stmt = (
        insert(drift_events)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["run_id", "field", "change"])
        .returning(drift_events.c.field, drift_events.c.change)
    )
    new = {(f, c) for f, c in (await conn.execute(stmt)).all()}
    return [e for e in events if (e.field, e.change) in new]


async def save_cursor(
    conn: AsyncConnection, source: SourceType, run_id: uuid.UUID, cursor: dict[str, Any]
) -> None:
    stmt = insert(checkpoints).values(
        source_type=source, cursor=cursor, status="running", last_run_id=run_id
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["source_type"],
        set_={"cursor": stmt.excluded.cursor, "last_run_id": run_id, "updated_at": sa.func.now()},
    )
    await conn.execute(stmt)


async def add_run_counts(
    conn: AsyncConnection, run_id: uuid.UUID, counts: BatchCounts, warnings: list[str]
) -> None:
    values: dict[str, Any] = {
        name: getattr(runs.c, name) + value for name, value in counts.as_dict().items()
    }
    values["heartbeat_at"] = sa.func.now()
    if warnings:
        values["warnings"] = runs.c.warnings + sa.cast(warnings, runs.c.warnings.type)
    await conn.execute(runs.update().where(runs.c.id == run_id).values(**values))


async def write_batch(
    conn: AsyncConnection,
    resolver: AssetResolver,
    source: SourceType,
    run_id: uuid.UUID,
    batch: Batch,
) -> tuple[BatchCounts, list[DriftEvent]]:
    """Write a whole batch and its checkpoint in the caller's (single) transaction."""
    counts = BatchCounts(processed=batch.processed)
    driver = await _driver(conn) if batch.raw or batch.records else None
    counts.raw_stored = await store_raw(conn, source, run_id, batch.raw, driver)
    counts.inserted, counts.updated, counts.unchanged = await upsert_records(
        conn, resolver, batch.records, run_id, driver
    )
    counts.rejected = await store_rejects(conn, source, run_id, batch.rejects)
    new_drift = await store_drift(conn, source, run_id, batch.drift)
    counts.drift_events = len(new_drift)
    if batch.cursor is not None:
        await save_cursor(conn, source, run_id, batch.cursor)
    await add_run_counts(conn, run_id, counts, batch.warnings)
    return counts, new_drift
