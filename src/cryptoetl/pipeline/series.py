"""Market series: every observation belongs to one (source, venue, base, quote, interval).

A series row is created the first time one of its observations is written, with the asset its
base resolves to (:mod:`cryptoetl.pipeline.assets`) and ``info`` saying how the source found its
venue, quote and interval. Unknown quote or interval (``None``) is a value of its own in the
key: the rows of a file whose quote is unknown share one series and never merge with a series
whose quote is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.documents import AssetDoc, series_doc
from cryptoetl.sources.base import MarketRecord

SeriesKey = tuple[str, str, str, str | None, str | None]  # source, venue, base, quote, interval

_CREATE = """
INSERT INTO market_series (source_type, venue, base, symbol, quote, interval, asset_id, info)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::bigint[], $8::jsonb[])
ON CONFLICT (source_type, venue, base, coalesce(quote, ''), coalesce(interval, '')) DO NOTHING
"""
_FIND = """
SELECT s.id, k.n FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    WITH ORDINALITY AS k(source_type, venue, base, quote, interval, n)
JOIN market_series s ON s.source_type = k.source_type AND s.venue = k.venue
    AND s.base = k.base AND coalesce(s.quote, '') = coalesce(k.quote, '')
    AND coalesce(s.interval, '') = coalesce(k.interval, '')
"""


_NEW_SERIES = """
SELECT s.id, s.source_type, s.venue, s.base, s.symbol, s.quote, s.interval, s.asset_id, a.slug,
    a.symbol AS asset_symbol, a.name
FROM market_series s JOIN assets a ON a.id = s.asset_id
WHERE s.id = ANY($1::int[]) AND s.doc = ''
"""
_SET_DOCS = """
UPDATE market_series s SET doc = d.doc FROM unnest($1::int[], $2::text[]) AS d(id, doc)
WHERE s.id = d.id
"""


def series_key(record: MarketRecord) -> SeriesKey:
    return (record.source_type, record.venue, record.base_key, record.quote, record.interval)


def _columns(keys: Sequence[SeriesKey]) -> list[list[Any]]:
    return [list(column) for column in zip(*keys, strict=True)]


class SeriesResolver:
    """Series ids for records, inside the caller's transaction, cached per worker."""

    def __init__(self, assets: AssetResolver) -> None:
        self.assets = assets
        self._ids: dict[SeriesKey, int] = {}

    def forget(self) -> None:
        """After a rolled-back batch, cached ids may name series that were never committed."""
        self._ids.clear()
        self.assets.forget()

    async def resolve(
        self, driver: Any, groups: Mapping[SeriesKey, Sequence[MarketRecord]]
    ) -> dict[SeriesKey, int]:
        """The id of every series of ``groups`` (records by series key), created when new."""
        missing = [key for key in groups if key not in self._ids]
        if missing:
            await self._find(driver, missing)
            new = [key for key in missing if key not in self._ids]
            if new:
                await self._create(driver, [groups[key][0] for key in new])
                await self._find(driver, new)
                await self._render(driver, [self._ids[key] for key in new])
        return {key: self._ids[key] for key in groups}

    async def _render(self, driver: Any, series_ids: list[int]) -> None:
        """Each new series' API document (see :mod:`cryptoetl.pipeline.documents`)."""
        rows = await driver.fetch(_NEW_SERIES, series_ids)
        docs = [
            series_doc(
                source_type=r["source_type"],
                series_id=r["id"],
                venue=r["venue"],
                base=r["base"],
                symbol=r["symbol"],
                quote=r["quote"],
                interval=r["interval"],
                asset=AssetDoc(r["asset_id"], r["slug"], r["asset_symbol"], r["name"]),
            )
            for r in rows
        ]
        await driver.execute(_SET_DOCS, [r["id"] for r in rows], docs)

    async def _find(self, driver: Any, keys: Sequence[SeriesKey]) -> None:
        for series_id, n in await driver.fetch(_FIND, *_columns(keys)):
            self._ids[keys[n - 1]] = series_id

    async def _create(self, driver: Any, records: Sequence[MarketRecord]) -> None:
        asset_ids = await self.assets.resolve(driver, list(records))
        rows = [
            (
                *series_key(r),
                r.symbol,
                asset_ids[(r.source_type, r.base_key)],
                msgspec.json.encode(r.series_info or {}).decode(),
            )
            for r in records
        ]
        source, venue, base, quote, interval, symbol, asset, info = zip(*rows, strict=True)
        await driver.execute(
            _CREATE,
            list(source),
            list(venue),
            list(base),
            list(symbol),
            list(quote),
            list(interval),
            list(asset),
            list(info),
        )
