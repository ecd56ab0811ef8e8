"""The upsert of a batch's normalized records: market observations and news items.

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
as unchanged (looked at, not written). Everything runs in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from cryptoetl.db.tables import MARKET_PARTITIONS
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.documents import encode_metadata, news_doc
from cryptoetl.pipeline.series import SeriesKey, SeriesResolver, series_key
from cryptoetl.sources.base import MarketRecord, NewsRecord, SourceType, content_hash

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


async def upsert_observations(
    driver: Any, series: SeriesResolver, source: SourceType, records: Sequence[MarketRecord]
) -> tuple[int, int]:
    """Write market records; returns how many observations were inserted and updated."""
    if not records:
        return 0, 0
    groups = _by_series(records)
    ids = await series.resolve(driver, groups)
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


async def upsert_news(
    driver: Any, assets: AssetResolver, run_id: uuid.UUID, records: Sequence[NewsRecord]
) -> tuple[int, int]:
    """Write news records; returns how many items were inserted and updated."""
    if not records:
        return 0, 0
    latest = {(r.source_type, r.source_id): r for r in records}
    fallback = datetime.now(UTC)
    rows = [_news_row(r, assets, fallback) for r in latest.values()]
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
