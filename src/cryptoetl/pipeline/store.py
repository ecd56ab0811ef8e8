"""Writing one batch: raw → series → observations → news → rejects → drift → checkpoint → run.

Everything for a batch happens in the caller's transaction, so the checkpoint advances exactly
when the rows it covers are committed.

Market observations (the bulk: millions of CSV rows) take one of two paths per batch:

* **proven new** — every row lies outside its series' time bounds (``market_series.first_ts`` /
  ``last_ts``, kept exact in the same transaction as every write), so it cannot exist yet: the
  rows are COPY'd straight into the source's partition. This is the path of a first load, of an
  appended file and of a snapshot whose ``last_updated`` moved.
* **maybe known** — anything else (a re-read file, a second export of the same series): COPY
  into a temporary staging table, then one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` the values
  differ, so an unchanged row costs no write and is counted as unchanged.

If the proof is ever wrong (someone wrote observations behind the store's back), the COPY fails
on the unique key inside a savepoint and the batch falls back to the upsert: never an error,
never a duplicate. Series counts and bounds are updated by one statement per batch.

Duplicates inside one batch (the same series and timestamp twice, the same news identity
twice) follow one rule for every source: the later one wins, and the earlier ones are counted
as unchanged (looked at, not written).
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptoetl.db.notify import NOTIFY_DATA_CHANGED
from cryptoetl.db.tables import MARKET_PARTITIONS, RAW_TABLES, drift_events
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.documents import encode_metadata, news_doc
from cryptoetl.pipeline.series import SeriesKey, SeriesResolver, series_key
from cryptoetl.sources.base import (
    Batch,
    DriftEvent,
    MarketRecord,
    NewsRecord,
    RawPayload,
    Reject,
    SourceType,
    canonical_json,
    content_hash,
)

_json = msgspec.json.Encoder()

# Observation columns in COPY order; the value columns are what "changed" compares.
VALUE_COLUMNS = (
    "price",
    "open",
    "high",
    "low",
    "volume_base",
    "volume_quote",
    "market_cap",
    "change_pct",
    "rank",
    "metadata",
)
OBSERVATION_COLUMNS = ("series_id", "source_timestamp", *VALUE_COLUMNS)
ObservationRow = tuple[Any, ...]
_OBSERVATIONS_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS observations_staging (
    series_id int, source_timestamp timestamptz, price float8, open float8, high float8,
    low float8, volume_base float8, volume_quote float8, market_cap float8, change_pct float8,
    rank int, metadata json
) ON COMMIT DELETE ROWS
"""
_OBSERVATION_UPSERT = """
WITH written AS (
    INSERT INTO {partition} AS o ({columns}) SELECT {columns} FROM observations_staging
    ON CONFLICT (source_type, series_id, source_timestamp) DO UPDATE SET
        {assignments}, updated_at = now()
    WHERE ({old}) IS DISTINCT FROM ({new})
    RETURNING o.series_id, o.source_timestamp, (o.xmax = 0) AS inserted
)
SELECT series_id, count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
    min(source_timestamp) FILTER (WHERE inserted), max(source_timestamp) FILTER (WHERE inserted)
FROM written GROUP BY series_id
"""
_BOUNDS = "SELECT id, first_ts, last_ts FROM market_series WHERE id = ANY($1::int[]) FOR UPDATE"
_SETTLE_SERIES = """
UPDATE market_series s SET observations = s.observations + d.n,
    first_ts = least(s.first_ts, d.first_ts), last_ts = greatest(s.last_ts, d.last_ts)
FROM unnest($1::int[], $2::bigint[], $3::timestamptz[], $4::timestamptz[])
    AS d(id, n, first_ts, last_ts)
WHERE s.id = d.id
"""

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
    "doc",
)
_NEWS_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS news_staging (
    source_type text, source_id text, title text, summary text, url text, author text,
    category text, tags text[], mentioned_asset_ids bigint[], source_timestamp timestamptz,
    content_hash bytea, metadata jsonb, doc text
) ON COMMIT DELETE ROWS
"""
_NEWS_UPSERT = f"""
WITH written AS (
    INSERT INTO news_items AS n ({", ".join(NEWS_COLUMNS)}, run_id)
    SELECT {", ".join(NEWS_COLUMNS)}, $1::uuid FROM news_staging
    ON CONFLICT (source_type, source_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in NEWS_COLUMNS[2:])},
        run_id = excluded.run_id, updated_at = now()
    WHERE n.content_hash IS DISTINCT FROM excluded.content_hash
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
"""
_RAW_INSERT = """
INSERT INTO {table} (run_id, source_key, content_hash, payload)
SELECT $1::uuid, k, h, p::jsonb FROM unnest($2::text[], $3::bytea[], $4::text[]) AS t(k, h, p)
ON CONFLICT (source_key, content_hash) DO NOTHING
"""
_REJECT_INSERT = """
INSERT INTO rejected_records (source_type, run_id, source_key, payload, payload_hash, reason)
SELECT $1::text, $2::uuid, k, p::jsonb, h, r
FROM unnest($3::text[], $4::text[], $5::bytea[], $6::text[]) AS t(k, p, h, r)
ON CONFLICT (source_type, source_key, payload_hash) WHERE payload_hash IS NOT NULL DO NOTHING
"""


def _comparable(column: str) -> str:
    return f"{column}::text" if column == "metadata" else column


def _observation_upsert(partition: str) -> str:
    return _OBSERVATION_UPSERT.format(
        partition=partition,
        columns=", ".join(OBSERVATION_COLUMNS),
        assignments=", ".join(f"{c} = excluded.{c}" for c in VALUE_COLUMNS),
        # json has no equality: its text is compared (written canonically, see encode_metadata)
        old=", ".join(f"o.{_comparable(c)}" for c in VALUE_COLUMNS),
        new=", ".join(f"excluded.{_comparable(c)}" for c in VALUE_COLUMNS),
    )


_UPSERTS = {source: _observation_upsert(table) for source, table in MARKET_PARTITIONS.items()}


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
        await _prefer_lz4(driver)
        counts.raw_stored = await store_raw(driver, source, run_id, batch.raw)
        market = [r for r in batch.records if isinstance(r, MarketRecord)]
        news = [r for r in batch.records if isinstance(r, NewsRecord)]
        inserted, updated = await self._write_market(driver, source, market)
        news_inserted, news_updated = await self._write_news(driver, run_id, news)
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

    async def _write_market(
        self, driver: Any, source: SourceType, records: Sequence[MarketRecord]
    ) -> tuple[int, int]:
        if not records:
            return 0, 0
        groups = _by_series(records)
        ids = await self.series.resolve(driver, groups)
        bounds = {r[0]: (r[1], r[2]) for r in await driver.fetch(_BOUNDS, list(ids.values()))}
        new: list[ObservationRow] = []
        maybe: list[ObservationRow] = []
        settled: list[tuple[int, int, datetime, datetime]] = []
        for key, group in groups.items():
            series_id = ids[key]
            rows = _observation_rows(series_id, group)
            stamps = [row[1] for row in rows]
            lo, hi = min(stamps), max(stamps)
            first, last = bounds[series_id]
            if first is None or last is None or hi < first or lo > last:
                new += rows  # the common case, decided once per series and batch
                settled.append((series_id, len(rows), lo, hi))
            else:
                maybe += rows
        if new and not await _copy_new(driver, MARKET_PARTITIONS[source], new):
            maybe, settled = new + maybe, []
        updated = 0
        if maybe:
            await driver.execute(_OBSERVATIONS_STAGING)
            await driver.copy_records_to_table(
                "observations_staging", records=maybe, columns=OBSERVATION_COLUMNS
            )
            for series_id, n_inserted, n_updated, lo, hi in await driver.fetch(_UPSERTS[source]):
                updated += n_updated
                if n_inserted:
                    settled.append((series_id, n_inserted, lo, hi))
        if settled:
            await driver.execute(_SETTLE_SERIES, *(list(c) for c in zip(*settled, strict=True)))
        return sum(s[1] for s in settled), updated

    async def _write_news(
        self, driver: Any, run_id: uuid.UUID, records: Sequence[NewsRecord]
    ) -> tuple[int, int]:
        if not records:
            return 0, 0
        latest = {(r.source_type, r.source_id): r for r in records}
        fallback = datetime.now(UTC)
        rows = [_news_row(r, self.assets, fallback) for r in latest.values()]
        await driver.execute(_NEWS_STAGING)
        await driver.copy_records_to_table("news_staging", records=rows, columns=NEWS_COLUMNS)
        inserted, updated = await driver.fetchrow(_NEWS_UPSERT, run_id)
        return int(inserted), int(updated)


def _by_series(records: Sequence[MarketRecord]) -> dict[SeriesKey, list[MarketRecord]]:
    """Records grouped by series, in order. The full key is only built when a base coin is
    seen with other venue/quote/interval than before (per row, a dict lookup on the base)."""
    groups: dict[SeriesKey, list[MarketRecord]] = {}
    by_base: dict[str, tuple[MarketRecord, list[MarketRecord]]] = {}
    for r in records:
        base = r.coin_id or r.symbol
        seen = by_base.get(base)
        if seen is not None:
            first, group = seen
            if r.venue == first.venue and r.quote == first.quote and r.interval == first.interval:
                group.append(r)
                continue
        group = groups.setdefault(series_key(r), [])
        group.append(r)
        by_base[base] = (r, group)
    return groups


def _observation_rows(series_id: int, records: list[MarketRecord]) -> list[ObservationRow]:
    """COPY rows in OBSERVATION_COLUMNS order, one per timestamp: the later record wins."""
    rows = [
        (
            series_id,
            r.source_timestamp,
            r.price,
            r.open,
            r.high,
            r.low,
            r.volume_base,
            r.volume_quote,
            r.market_cap,
            r.change_pct,
            r.rank,
            None if r.metadata is None else encode_metadata(r.metadata),
        )
        for r in records
    ]
    if len({row[1] for row in rows}) < len(rows):
        rows = list({row[1]: row for row in rows}.values())
    return rows


async def _copy_new(driver: Any, partition: str, rows: list[ObservationRow]) -> bool:
    """COPY rows the series bounds prove new; False (nothing written) if one existed after all."""
    await driver.execute("SAVEPOINT observations_copy")
    try:
        await driver.copy_records_to_table(partition, records=rows, columns=OBSERVATION_COLUMNS)
    except asyncpg.UniqueViolationError:
        await driver.execute("ROLLBACK TO SAVEPOINT observations_copy")
        return False
    await driver.execute("RELEASE SAVEPOINT observations_copy")
    return True


def _news_row(record: NewsRecord, assets: AssetResolver, fallback_ts: datetime) -> tuple[Any, ...]:
    mentioned = assets.mentions(record.title)
    timestamp = record.source_timestamp or fallback_ts
    metadata = encode_metadata(record.metadata) or "{}"
    return (
        record.source_type,
        record.source_id,
        record.title,
        record.summary,
        record.url,
        record.author,
        record.category,
        list(record.tags),
        [asset.id for asset in mentioned],
        timestamp,
        content_hash(record),
        metadata,
        news_doc(record, timestamp, mentioned, metadata),
    )


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
    driver: Any, source: SourceType, run_id: uuid.UUID, raw: Sequence[RawPayload]
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
    sql = _RAW_INSERT.format(table=RAW_TABLES[source].name)
    return _affected(await driver.execute(sql, run_id, keys, hashes, payloads))


async def store_rejects(
    driver: Any, source: SourceType, run_id: uuid.UUID, rejects: Sequence[Reject]
) -> int:
    """Store rejects; the same bad payload at the same key is stored once (a re-read of a file
    does not multiply them). Returns how many this batch rejected, stored before or not."""
    if rejects:
        keys, payloads, hashes, reasons = [], [], [], []
        for r in rejects:
            encoded, digest = canonical_json(r.payload)
            keys.append(r.source_key)
            payloads.append(encoded.decode())
            hashes.append(digest)
            reasons.append(r.reason)
        await driver.execute(_REJECT_INSERT, source, run_id, keys, payloads, hashes, reasons)
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
