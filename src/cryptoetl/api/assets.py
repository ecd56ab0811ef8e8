"""``GET /assets`` (canonical assets, paginated) and ``GET /assets/{id}`` (one asset in depth).

``{id}`` is an asset id, a slug or a symbol (a symbol that names several coins is a 404 that
lists their slugs). The detail view shows how each source's coin was mapped to the asset
(method, confidence), the latest observation of each of its market series with the spread
between USD prices (``(max - min) / min * 100`` over the current ones), and the ten newest news
items that mention the asset (``mentioned_asset_ids @> ARRAY[id]``, served by the GIN index).
Price history: ``GET /assets/{id}/prices`` (:mod:`cryptoetl.api.prices`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import Parameter

from cryptoetl.api import params
from cryptoetl.api.deps import Database
from cryptoetl.api.docs import openapi_text
from cryptoetl.api.errors import JSON, NotFound, error_responses
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.queries import load
from cryptoetl.api.request_context import latency_ms, meta_of, request_id_of
from cryptoetl.api.schemas import (
    AssetDetail,
    AssetList,
    AssetListItem,
    AssetListMeta,
    AssetMapping,
    AssetRef,
    ListPagination,
    NewsItem,
    SeriesRef,
    SourcePrice,
)
from cryptoetl.pipeline.documents import iso_utc

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
NEWS_LIMIT = 10

_SQL = load("assets")
PAGE_SQL = _SQL["page"]
FIND_SQL = _SQL["find"]
MAPPINGS_SQL = _SQL["mappings"]
PRICES_SQL = _SQL["latest_prices"]
NEWS_SQL = _SQL["news"]
MAX_PRICES = 50
MAX_PAGE = 10**6


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def asset_page(
    conn: Any, symbol: str | None, search: str | None, limit: int, offset: int
) -> tuple[int, list[AssetListItem]]:
    """The total of the assets matching ``symbol`` and ``search``, and one page of them."""
    pattern = like_pattern(search) if search else None
    rows = await conn.fetch(PAGE_SQL, symbol, pattern, limit, offset)
    items = [
        AssetListItem(
            id=r["id"], slug=r["slug"], symbol=r["symbol"], name=r["name"], records=r["records"]
        )
        for r in rows
        if r["id"] is not None
    ]
    return int(rows[0]["total"]), items


@get(
    "/assets",
    summary="Canonical assets",
    description=openapi_text(__doc__),
    responses=error_responses(400, 503),
)
async def list_assets(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    page: Annotated[str | None, params.integer("Page number", 1, MAX_PAGE, 1)] = None,
    page_size: Annotated[
        str | None, params.integer("Assets per page", 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)
    ] = None,
    search: Annotated[
        str | None, params.text("Substring of name, slug or symbol (any case)", 100)
    ] = None,
    symbol: Annotated[str | None, params.text("Exact symbol (any case)", 50)] = None,
) -> Response[AssetList]:
    errors = ParamErrors()
    params.reject_unknown(request, ("page", "page_size", "search", "symbol"), errors)
    page_n = errors.integer("page", page, 1, 1, MAX_PAGE)
    size = errors.integer("page_size", page_size, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    text = errors.text("search", search, 100)
    sym = errors.text("symbol", symbol, 50)
    errors.raise_if_any()
    async with db.connection() as conn:
        total, items = await asset_page(conn, sym, text, size, (page_n - 1) * size)
    body = AssetList(
        data=items,
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
    """(max - min) / min * 100 over the series' latest USD prices that are current (see above):
    prices in other quotes are other units, never compared."""
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
    description=openapi_text(__doc__),
    responses=error_responses(400, 404, 503, not_found="Unknown asset"),
)
async def get_asset(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    asset_id: Annotated[str, Parameter(description="Asset id, slug or symbol")],
) -> Response[AssetDetail]:
    errors = ParamErrors()
    params.reject_unknown(request, (), errors)
    errors.raise_if_any()
    async with db.connection() as conn:
        found = await find_asset(conn, asset_id)
        mappings = await conn.fetch(MAPPINGS_SQL, found["id"])
        latest = latest_prices(await conn.fetch(PRICES_SQL, found["id"], MAX_PRICES))
        news = await conn.fetch(NEWS_SQL, found["id"], NEWS_LIMIT)
    body = AssetDetail(
        asset=AssetRef(**dict(found)),
        mappings=mapping_items(mappings),
        prices=latest,
        price_spread_pct=spread_pct(latest),
        recent_news=[NewsItem(**dict(n)) for n in news],
        metadata=meta_of(request),
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
    """The asset row an ``{id, slug or symbol}`` path segment names; :class:`NotFound` (naming
    the candidates of an ambiguous symbol, or how to search) otherwise."""
    shown = repr(asset_ref[:100])
    if "\x00" in asset_ref:  # no slug holds NUL (PostgreSQL text cannot): no query needed
        raise NotFound(f"no asset with id, slug or symbol {shown}")
    rows = await conn.fetch(FIND_SQL, numeric_id(asset_ref), asset_ref)
    if not rows:
        raise NotFound(
            f"no asset with id, slug or symbol {shown}; search with /assets?search=<text>"
        )
    if len(rows) > 1:
        slugs = ", ".join(r["slug"] for r in rows[:5])
        raise NotFound(
            f"symbol {shown} names {len(rows) if len(rows) < 6 else 'several'} assets "
            f"({slugs}); ask for one of them by slug or id"
        )
    return rows[0]


def latest_prices(rows: Sequence[Any]) -> list[SourcePrice]:
    """Rows of PRICES_SQL as API objects, ``*_usd`` only where the quote is USD."""
    prices = []
    for r in rows:
        usd = r["quote"] == "USD"
        daily = r["interval"] in ("snapshot", "1d")
        prices.append(
            SourcePrice(
                source_type=r["source_type"],
                source_id=f"{r['key']}@{iso_utc(r['source_timestamp'])}",
                series=SeriesRef(
                    id=r["id"],
                    venue=r["venue"],
                    base=r["base"],
                    quote=r["quote"],
                    interval=r["interval"],
                ),
                quote=r["quote"],
                price=r["price"],
                price_usd=r["price"] if usd else None,
                market_cap_usd=r["market_cap"] if usd else None,
                volume_24h_usd=r["volume_quote"] if usd and daily else None,
                change_24h_pct=r["change_pct"] if daily else None,
                rank=r["rank"],
                source_timestamp=r["source_timestamp"],
            )
        )
    return prices


def mapping_items(rows: Sequence[Any]) -> list[AssetMapping]:
    """Rows of MAPPINGS_SQL as API objects (shared by the JSON and the HTML page)."""
    return [
        AssetMapping(
            source_type=m[0], source_id=m[1], symbol=m[2], name=m[3], method=m[4], confidence=m[5]
        )
        for m in rows
    ]
