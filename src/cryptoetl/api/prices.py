"""``GET /assets/{id or slug}/prices``: a coin's price history as OHLC buckets, per series.

Each series of the asset (optionally only those of ``source``, ``venue``, ``quote``) is read on
its ``(series, timestamp)`` index over ``[since, until)`` and aggregated in SQL into buckets of
``interval`` (``date_bin`` from the Unix epoch, so buckets of every series line up):

* ``open`` the first observation's open (its price when it has no open), ``close`` the last
  price, ``high``/``low`` the extremes of highs/lows (prices when absent), ``observations`` how
  many rows the bucket holds, all in the series' ``quote`` currency;
* ``volume_base``/``volume_quote`` the sums of candle volumes. A snapshot series' volumes are
  trailing 24 h figures, which do not add up: for those they are ``null``.

Bounded: at most :data:`MAX_SERIES` series and :data:`MAX_BUCKETS` buckets per series (the
newest; ``truncated`` says when older buckets were left out). Without ``interval`` the finest
width that fits the range in :data:`MAX_BUCKETS` buckets is chosen; without ``since`` the range
starts at the first observation (or ``MAX_BUCKETS`` buckets before ``until`` when ``interval``
is given). The dashboard's price chart reads the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import Parameter

from cryptoetl.api.assets import find_asset
from cryptoetl.api.data.query import quote_filter, venue_filter
from cryptoetl.api.deps import Database
from cryptoetl.api.errors import JSON, error_responses
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.request_context import meta_of
from cryptoetl.api.schemas import (
    AssetRef,
    PriceBucket,
    PriceHistory,
    PriceSeries,
    SeriesRef,
)

MAX_BUCKETS = 500
MAX_SERIES = 20
# Bucket widths a client may ask for, finest first.
WIDTHS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
    "30d": timedelta(days=30),
}
MARKET_SOURCES = ("csv", "coinpaprika", "coingecko")

SERIES_SQL = """SELECT id, source_type, venue, base, quote, interval, first_ts, last_ts
FROM market_series
WHERE asset_id = $1::bigint AND ($2::text IS NULL OR source_type = $2::text)
    AND ($3::text IS NULL OR venue = $3::text)
    AND ($4::text IS NULL OR quote = $4::text OR ($4::text = 'unknown' AND quote IS NULL))
    AND observations > 0
ORDER BY source_type, venue, quote NULLS LAST, interval NULLS LAST, id
LIMIT $5::int"""
# One index range scan per series; buckets newest first so LIMIT keeps the newest.
BUCKETS_SQL = """SELECT s.id, b.bucket, b.open, b.high, b.low, b.close, b.volume_base,
    b.volume_quote, b.n
FROM unnest($1::int[], $2::text[]) AS s(id, source_type)
CROSS JOIN LATERAL (
    SELECT date_bin($3::interval, o.source_timestamp, 'epoch') AS bucket,
        (array_agg(coalesce(o.open, o.price) ORDER BY o.source_timestamp))[1] AS open,
        max(coalesce(o.high, o.price)) AS high, min(coalesce(o.low, o.price)) AS low,
        (array_agg(o.price ORDER BY o.source_timestamp DESC))[1] AS close,
        sum(o.volume_base) AS volume_base, sum(o.volume_quote) AS volume_quote, count(*) AS n
    FROM market_observations o
    WHERE o.source_type = s.source_type AND o.series_id = s.id
        AND o.source_timestamp >= $4::timestamptz AND o.source_timestamp < $5::timestamptz
        AND o.price IS NOT NULL
    GROUP BY 1 ORDER BY 1 DESC LIMIT $6::int + 1
) b
ORDER BY s.id, b.bucket"""


@dataclass(frozen=True, slots=True)
class PriceQuery:
    source: str | None = None
    venue: str | None = None
    quote: str | None = None
    width: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_price_query(params: dict[str, list[str]]) -> PriceQuery:
    errors = ParamErrors()
    errors.unknown(params, ("source", "venue", "quote", "interval", "since", "until"))
    one = errors.single(params)
    query = PriceQuery(
        source=errors.choice("source", one("source"), MARKET_SOURCES),
        venue=venue_filter(errors, one("venue")),
        quote=quote_filter(errors, one("quote")),
        width=errors.choice("interval", one("interval"), tuple(WIDTHS)),
        since=errors.timestamp("since", one("since")),
        until=errors.timestamp("until", one("until")),
    )
    if query.since and query.until and query.since >= query.until:
        errors.add("until", "must be later than since")
    errors.raise_if_any()
    return query


def choose_width(span: timedelta) -> str:
    """The finest width that covers ``span`` in at most MAX_BUCKETS buckets."""
    for name, width in WIDTHS.items():
        if span <= width * MAX_BUCKETS:
            return name
    return next(reversed(WIDTHS))


def _range(query: PriceQuery, series: list[Any]) -> tuple[str, datetime, datetime]:
    """(width, since, until) for the request and the series it selects."""
    newest = max(s["last_ts"] for s in series)
    until = query.until or newest + timedelta(microseconds=1)
    if query.width is not None:
        width = query.width
        since = query.since or until - WIDTHS[width] * MAX_BUCKETS
    else:
        since = query.since or min(s["first_ts"] for s in series)
        width = choose_width(until - since)
    return width, since, until


async def price_history(conn: Any, asset_id: int, query: PriceQuery) -> list[PriceSeries]:
    """The asset's series and their buckets (the JSON endpoint and the dashboard chart)."""
    series = list(
        await conn.fetch(SERIES_SQL, asset_id, query.source, query.venue, query.quote, MAX_SERIES)
    )
    if not series:
        return []
    width, since, until = _range(query, series)
    rows = await conn.fetch(
        BUCKETS_SQL,
        [s["id"] for s in series],
        [s["source_type"] for s in series],
        WIDTHS[width],
        since,
        until,
        MAX_BUCKETS,
    )
    buckets: dict[int, list[PriceBucket]] = {s["id"]: [] for s in series}
    for r in rows:
        buckets[r[0]].append(
            PriceBucket(
                start=r[1],
                open=r[2],
                high=r[3],
                low=r[4],
                close=r[5],
                volume_base=r[6],
                volume_quote=r[7],
                observations=r[8],
            )
        )
    return [_series(s, width, buckets[s["id"]]) for s in series]


def _series(row: Any, width: str, buckets: list[PriceBucket]) -> PriceSeries:
    truncated = len(buckets) > MAX_BUCKETS
    kept = buckets[-MAX_BUCKETS:] if truncated else buckets
    if row["interval"] == "snapshot":  # trailing-24 h volumes do not add up
        kept = [msgspec.structs.replace(b, volume_base=None, volume_quote=None) for b in kept]
    return PriceSeries(
        source_type=row["source_type"],
        series=SeriesRef(
            id=row["id"],
            venue=row["venue"],
            base=row["base"],
            quote=row["quote"],
            interval=row["interval"],
        ),
        bucket=width,
        truncated=truncated,
        buckets=kept,
    )


@get(
    "/assets/{asset_id:str}/prices",
    summary="Price history of an asset: OHLC buckets per series",
    description=(
        "OHLC buckets (open, high, low, close, volumes, number of observations) of every market "
        "series of the asset, in each series' quote currency, computed in SQL on an index. "
        f"At most {MAX_SERIES} series and {MAX_BUCKETS} buckets per series."
    ),
    responses=error_responses(400, 404, 503, not_found="Unknown asset"),
)
async def get_prices(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    asset_id: Annotated[str, Parameter(description="Asset id, slug or symbol")],
    source: Annotated[str | None, Parameter(description="csv, coinpaprika or coingecko")] = None,
    venue: Annotated[str | None, Parameter(description="Venue of the series")] = None,
    quote: Annotated[str | None, Parameter(description="Quote currency of the series")] = None,
    interval: Annotated[
        str | None, Parameter(description=f"Bucket width: {', '.join(WIDTHS)}")
    ] = None,
    since: Annotated[str | None, Parameter(description="Buckets from (ISO 8601)")] = None,
    until: Annotated[str | None, Parameter(description="Buckets before (ISO 8601)")] = None,
) -> Response[PriceHistory]:
    params = {key: request.query_params.getall(key) for key in request.query_params}
    query = parse_price_query(params)
    async with db.connection() as conn:
        found = await find_asset(conn, asset_id)
        series = await price_history(conn, found["id"], query)
    body = PriceHistory(
        asset=AssetRef(**dict(found)),
        series=series,
        metadata=meta_of(request),
    )
    return Response(body, media_type=JSON)
