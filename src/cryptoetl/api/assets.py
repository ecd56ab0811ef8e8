"""``GET /assets`` (canonical assets, paginated) and ``GET /assets/{id}`` (one asset in depth).

The detail view shows how each source's coin was mapped to the asset (method, confidence),
the latest market row per source with the spread between sources
(``(max - min) / min * 100`` over those latest prices), and the ten newest news items that
mention the asset (``mentioned_asset_ids @> ARRAY[id]``, served by the GIN index).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from cryptoetl.api.deps import Database
from cryptoetl.api.errors import JSON, NotFound, ParamErrors, latency_ms, request_id_of
from cryptoetl.api.schemas import (
    AssetDetail,
    AssetList,
    AssetListItem,
    AssetListMeta,
    AssetMapping,
    AssetRef,
    ErrorBody,
    ListPagination,
    Meta,
    NewsItem,
    SourcePrice,
)
from cryptoetl.config import SOURCE_TYPES

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
NEWS_LIMIT = 10
MARKET_SOURCES = [s for s in SOURCE_TYPES if s != "rss"]

# $1 symbol (exact, any case) and $2 search pattern (substring of name, slug or symbol).
_WHERE = """($1::text IS NULL OR a.symbol = upper($1::text))
    AND ($2::text IS NULL OR a.name ILIKE $2::text ESCAPE '\\' OR a.slug ILIKE $2::text ESCAPE '\\'
         OR a.symbol ILIKE $2::text ESCAPE '\\')"""
LIST_SQL = f"""SELECT a.id, a.slug, a.symbol, a.name,
    coalesce((SELECT sum(c.n) FROM record_counts c WHERE c.asset_id = a.id), 0)::bigint AS records
FROM assets a WHERE {_WHERE}
ORDER BY a.id LIMIT $3::int OFFSET $4::bigint"""
COUNT_SQL = f"SELECT count(*) FROM assets a WHERE {_WHERE}"

FIND_SQL = (
    "SELECT id, slug, symbol, name FROM assets "
    "WHERE id = $1::bigint OR ($1::bigint IS NULL AND slug = lower($2::text))"
)
MAPPINGS_SQL = (
    "SELECT source_type, source_id, symbol, name, match_method, confidence::float8 "
    "FROM asset_mappings WHERE asset_id = $1::bigint ORDER BY source_type, source_id"
)
# One index probe per source on (asset_id, source_timestamp DESC, id DESC).
PRICES_SQL = """SELECT s.source_type, r.source_id, r.price_usd, r.market_cap_usd, r.volume_24h_usd,
    r.change_24h_pct, r.rank, r.source_timestamp
FROM unnest($2::text[]) AS s(source_type)
CROSS JOIN LATERAL (
    SELECT * FROM records r
    WHERE r.asset_id = $1::bigint AND r.source_type = s.source_type AND r.kind = 'market'
    ORDER BY r.source_timestamp DESC, r.id DESC LIMIT 1
) r
ORDER BY s.source_type"""
NEWS_SQL = """SELECT id, source_type, source_id, title, url, author, category, source_timestamp
FROM records
WHERE mentioned_asset_ids @> ARRAY[$1::bigint] AND kind = 'news'
ORDER BY source_timestamp DESC, id DESC LIMIT $2::int"""

_ERRORS = {
    400: ResponseSpec(ErrorBody, description="Invalid parameters", generate_examples=False),
    503: ResponseSpec(ErrorBody, description="Database unavailable", generate_examples=False),
}


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@get(
    "/assets",
    summary="Canonical assets",
    description=__doc__,
    responses=_ERRORS,
)
async def list_assets(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    page: Annotated[
        str | None,
        Parameter(
            description="Page number",
            schema_extra={"type": "integer", "one_of": None, "minimum": 1, "default": 1},
        ),
    ] = None,
    page_size: Annotated[
        str | None,
        Parameter(
            description=f"Assets per page (1-{MAX_PAGE_SIZE})",
            schema_extra={"type": "integer", "one_of": None, "minimum": 1, "maximum": 1000},
        ),
    ] = None,
    search: Annotated[
        str | None,
        Parameter(
            description="Substring of name, slug or symbol (any case)",
            schema_extra={"type": "string", "one_of": None},
        ),
    ] = None,
    symbol: Annotated[
        str | None,
        Parameter(
            description="Exact symbol (any case)",
            schema_extra={"type": "string", "one_of": None},
        ),
    ] = None,
) -> Response[AssetList]:
    errors = ParamErrors()
    page_n = errors.integer("page", page, 1, 1, 10**6)
    size = errors.integer("page_size", page_size, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    text = errors.text("search", search, 100)
    sym = errors.text("symbol", symbol, 50)
    errors.raise_if_any()
    pattern = like_pattern(text) if text else None
    async with db.connection() as conn:
        total = await conn.fetchval(COUNT_SQL, sym, pattern)
        rows = await conn.fetch(LIST_SQL, sym, pattern, size, (page_n - 1) * size)
    body = AssetList(
        data=[
            AssetListItem(id=r[0], slug=r[1], symbol=r[2], name=r[3], records=r[4]) for r in rows
        ],
        metadata=AssetListMeta(
            request_id=request_id_of(request),
            api_latency_ms=latency_ms(request),
            pagination=ListPagination(
                page=page_n,
                page_size=size,
                total_records=total,
                total_pages=math.ceil(total / size),
            ),
        ),
    )
    return Response(body, media_type=JSON)


# "Now" for the spread: prices observed within this window of the newest one. A CSV history that
# ended years ago is still listed, but comparing it with today's snapshot is no spread at all.
SPREAD_WINDOW = timedelta(hours=24)


def spread_pct(prices: list[SourcePrice]) -> float | None:
    """(max - min) / min * 100 over the sources' latest prices that are current (see above)."""
    priced = [p for p in prices if p.price_usd is not None and p.price_usd > 0]
    if not priced:
        return None
    newest = max(p.source_timestamp for p in priced)
    values = [
        p.price_usd
        for p in priced
        if p.price_usd is not None and newest - p.source_timestamp <= SPREAD_WINDOW
    ]
    if len(values) < 2:
        return None
    return round((max(values) - min(values)) / min(values) * 100, 6)


@get(
    "/assets/{asset_id:str}",
    summary="One asset: mappings, latest price per source and spread, recent news",
    description=__doc__,
    responses={**_ERRORS, 404: ResponseSpec(ErrorBody, description="Unknown asset")},
)
async def get_asset(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    asset_id: Annotated[str, Parameter(description="Asset id or slug")],
) -> Response[AssetDetail]:
    async with db.connection() as conn:
        found = await find_asset(conn, asset_id)
        if found is None:
            raise NotFound(f"no asset with id or slug {asset_id[:100]!r}")
        mappings = await conn.fetch(MAPPINGS_SQL, found["id"])
        prices = await conn.fetch(PRICES_SQL, found["id"], MARKET_SOURCES)
        news = await conn.fetch(NEWS_SQL, found["id"], NEWS_LIMIT)
    latest = [SourcePrice(**dict(r)) for r in prices]
    body = AssetDetail(
        asset=AssetRef(**dict(found)),
        mappings=mapping_items(mappings),
        prices=latest,
        price_spread_pct=spread_pct(latest),
        recent_news=[NewsItem(**dict(n)) for n in news],
        metadata=Meta(request_id=request_id_of(request), api_latency_ms=latency_ms(request)),
    )
    return Response(body, media_type=JSON)


def numeric_id(asset_ref: str) -> int | None:
    """The id an ``{id or slug}`` path segment names, if it is one.

    ``isascii``: ``str.isdigit`` also accepts digits ``int`` rejects ("²") or reads as another
    number ("१" is 1), which would be a 500 or the wrong asset.
    """
    if asset_ref.isascii() and asset_ref.isdigit() and len(asset_ref) <= 18:
        return int(asset_ref)
    return None


async def find_asset(conn: Any, asset_ref: str) -> Any:
    """The asset row an ``{id or slug}`` path segment names, or None."""
    if "\x00" in asset_ref:
        return None  # no slug holds NUL (PostgreSQL text cannot): unknown, no query needed
    return await conn.fetchrow(FIND_SQL, numeric_id(asset_ref), asset_ref)


def mapping_items(rows: Sequence[Any]) -> list[AssetMapping]:
    """Rows of MAPPINGS_SQL as API objects (shared by the JSON and the HTML page)."""
    return [
        AssetMapping(
            source_type=m[0], source_id=m[1], symbol=m[2], name=m[3], method=m[4], confidence=m[5]
        )
        for m in rows
    ]
