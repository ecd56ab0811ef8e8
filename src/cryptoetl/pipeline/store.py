"""Writing one batch: raw → assets → normalized upsert → rejects → drift → checkpoint → run.

Everything for a batch happens in the caller's transaction, so the checkpoint advances exactly
when the rows it covers are committed. The normalized upsert is the one bulk write routine of
the project: COPY into a temporary staging table, then one ``INSERT … SELECT … ON CONFLICT``
that skips rows whose content hash did not change (counted as unchanged, no write).
"""

from __future__ import annotations

import uuid
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
    content_hash,
)

_json = msgspec.json.Encoder()

# Columns written by the upsert, in COPY order.
RECORD_COLUMNS = (
    "kind",
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
    "summary",
    "url",
    "author",
    "category",
    "tags",
    "mentioned_asset_ids",
    "source_timestamp",
    "content_hash",
    "metadata",
    "run_id",
)
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS records_staging (
    seq serial, kind text, source_type text, source_id text, asset_id bigint, symbol text,
    price_usd float8, market_cap_usd float8, volume_24h_usd float8, change_24h_pct float8,
    rank int, title text, summary text, url text, author text, category text, tags text[],
    mentioned_asset_ids bigint[], source_timestamp timestamptz, content_hash bytea,
    metadata jsonb, run_id uuid
) ON COMMIT DELETE ROWS
"""
_UPDATABLE = [c for c in RECORD_COLUMNS if c not in ("source_type", "source_id")]
_UPSERT = f"""
WITH staged AS (
    SELECT DISTINCT ON (source_type, source_id) {", ".join(RECORD_COLUMNS)}
    FROM records_staging ORDER BY source_type, source_id, seq DESC
), written AS (
    INSERT INTO records ({", ".join(RECORD_COLUMNS)})
    SELECT {", ".join(RECORD_COLUMNS)} FROM staged
    ON CONFLICT (source_type, source_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in _UPDATABLE)}, updated_at = now()
    WHERE records.content_hash IS DISTINCT FROM excluded.content_hash
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
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


async def store_raw(
    conn: AsyncConnection, source: SourceType, run_id: uuid.UUID, raw: Sequence[RawPayload]
) -> int:
    """Insert payloads; identical content for the same key is stored once."""
    if not raw:
        return 0
    table = RAW_TABLES[source]
    rows = [
        {
            "run_id": run_id,
            "source_key": item.source_key,
            "content_hash": content_hash(item.payload),
            "payload": item.payload,
        }
        for item in raw
    ]
    stmt = (
        insert(table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["source_key", "content_hash"])
        .returning(table.c.id)
    )
    return len((await conn.execute(stmt)).all())


def _market_row(record: MarketRecord, asset_id: int | None) -> tuple[Any, ...]:
    return (
        "market",
        record.source_type,
        record.source_id,
        asset_id,
        record.symbol,
        record.price_usd,
        record.market_cap_usd,
        record.volume_24h_usd,
        record.change_24h_pct,
        record.rank,
        record.name,
        None,
        None,
        None,
        None,
        [],
        [],
        record.source_timestamp,
        content_hash(record),
        _json.encode(record.metadata).decode(),
    )


def _news_row(record: NewsRecord, mentions: list[int], fallback_ts: datetime) -> tuple[Any, ...]:
    return (
        "news",
        record.source_type,
        record.source_id,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        record.title,
        record.summary,
        record.url,
        record.author,
        record.category,
        list(record.tags),
        mentions,
        record.source_timestamp or fallback_ts,
        content_hash(record),
        _json.encode(record.metadata).decode(),
    )


async def _record_rows(
    conn: AsyncConnection, resolver: AssetResolver, records: Sequence[Record], run_id: uuid.UUID
) -> list[tuple[Any, ...]]:
    market = [r for r in records if isinstance(r, MarketRecord)]
    asset_ids = await resolver.resolve(conn, market) if market else {}
    now = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    for record in records:
        if isinstance(record, MarketRecord):
            asset_id = asset_ids[(record.source_type, mapping_key(record))]
            rows.append((*_market_row(record, asset_id), run_id))
        else:
            mentions = resolver.mentions(record.title)
            rows.append((*_news_row(record, mentions, now), run_id))
    return rows


async def upsert_records(
    conn: AsyncConnection, resolver: AssetResolver, records: Sequence[Record], run_id: uuid.UUID
) -> tuple[int, int, int]:
    """Bulk upsert; returns (inserted, updated, unchanged)."""
    if not records:
        return 0, 0, 0
    rows = await _record_rows(conn, resolver, records, run_id)
    await conn.exec_driver_sql(_STAGING_DDL)
    raw_conn = await conn.get_raw_connection()
    driver = raw_conn.driver_connection
    assert driver is not None
    await driver.copy_records_to_table("records_staging", records=rows, columns=RECORD_COLUMNS)
    row: Sequence[Any] = (await conn.exec_driver_sql(_UPSERT)).one()
    inserted, updated = int(row[0]), int(row[1])
    # Duplicates inside one batch count as unchanged: they were looked at, not written twice.
    return inserted, updated, len(rows) - inserted - updated


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
    counts.raw_stored = await store_raw(conn, source, run_id, batch.raw)
    counts.inserted, counts.updated, counts.unchanged = await upsert_records(
        conn, resolver, batch.records, run_id
    )
    counts.rejected = await store_rejects(conn, source, run_id, batch.rejects)
    new_drift = await store_drift(conn, source, run_id, batch.drift)
    counts.drift_events = len(new_drift)
    if batch.cursor is not None:
        await save_cursor(conn, source, run_id, batch.cursor)
    await add_run_counts(conn, run_id, counts, batch.warnings)
    return counts, new_drift
