"""``GET /data``: normalized records (market observations and news), newest first, filtered,
paginated by page or by cursor.

Order: ``source_timestamp DESC, id DESC``. ``page``/``page_size`` address pages by offset
(capped at :data:`~cryptoetl.api.data.query.MAX_OFFSET` rows); every answer also carries
``next_cursor``, a keyset cursor for the row after the last one returned (``null`` when nothing
follows): any depth costs what the first page costs. A cursor is bound to the filters it was
issued for. Totals: see :mod:`cryptoetl.api.data.totals`. Every market item carries its series
(venue, base, quote, interval) and its values in the quote currency; ``price_usd``/``value``
only ever hold USD prices.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, NamedTuple, TypeAlias

import msgspec
from litestar import Request, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from cryptoetl.api.data import render
from cryptoetl.api.data.filters import bind, shape_of, values_of
from cryptoetl.api.data.page import page_statement, total_statement
from cryptoetl.api.data.query import (
    KINDS,
    MAX_PAGE_SIZE,
    DataQuery,
    encode_cursor,
    parse_query,
)
from cryptoetl.api.data.totals import Total, planner_estimate, settle, total_mode
from cryptoetl.api.data.window import window_total
from cryptoetl.api.deps import Database, database_of
from cryptoetl.api.errors import error_responses
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.responses import (
    Answer,
    Caches,
    Render,
    cached_json,
    caches_of,
    placeholder_meta,
)
from cryptoetl.api.schemas import DataEnvelope, DataMeta, DataPage, Pagination


class PageResult(NamedTuple):
    items: bytes
    total: Total
    next_after: tuple[datetime, int] | None


async def fetch_page(db: Database, caches: Caches, query: DataQuery) -> PageResult:
    key, tags = query.filter_key(), query.sources_read()
    known = caches.totals.get(key)
    mode = total_mode(query, known)
    token = caches.totals.token(tags)
    shape = shape_of(query, exact_total=mode == "exact")
    values = values_of(query)
    statement = page_statement(shape)
    async with db.connection() as conn:
        rows = await conn.fetch(statement.sql, *bind(statement, values))
        await caches.series_docs.load(conn, rows)
        computed = rows[0][render.TOTAL] if rows else None
        if mode == "exact" and not rows:
            only_total = total_statement(shape)
            computed = await conn.fetchval(only_total.sql, *bind(only_total, values))
        elif mode == "window":
            computed = await window_total(conn, caches.windows, query, shape, values)
        elif mode == "planner":  # search or category: ask the planner, once per filter set
            known = Total(await planner_estimate(conn, shape, values), True)
            caches.totals.put(key, known, tags, token)
    total = settle(query, len(rows), computed, known, mode)
    if not total.is_estimate:
        caches.totals.put(key, total, tags, token)
    page = rows[: query.page_size]
    has_more = len(rows) > query.page_size
    last = (render.timestamp_of(page[-1]), page[-1][render.ID]) if has_more else None
    return PageResult(render.items(page, caches.series_docs), total, last)


async def render_page(db: Database, caches: Caches, query: DataQuery) -> bytes:
    result = await fetch_page(db, caches, query)
    next_cursor = None
    if result.next_after is not None:
        next_cursor = encode_cursor(*result.next_after, query.fingerprint())
    pagination = Pagination(
        page=None if query.after else query.page,
        page_size=query.page_size,
        total_records=result.total.value,
        total_pages=math.ceil(result.total.value / query.page_size),
        next_cursor=next_cursor,
        total_is_estimate=result.total.is_estimate,
    )
    placeholder = placeholder_meta()
    meta = DataMeta(
        request_id=placeholder.request_id,
        api_latency_ms=placeholder.api_latency_ms,
        pagination=pagination,
        filters_applied=query.filters_applied(),
    )
    return _encoder.encode(DataEnvelope(data=msgspec.Raw(result.items), metadata=meta))


_encoder = msgspec.json.Encoder()


def _text(description: str, **schema: Any) -> Any:
    # Values are validated by us (so one 400 can name every bad parameter): Litestar only sees
    # strings, and schema_extra documents the real type.
    return Parameter(
        description=description, schema_extra={"type": "string", "one_of": None, **schema}
    )


def _integer(description: str, default: int, low: int, high: int) -> Any:
    extra = {"type": "integer", "one_of": None, "minimum": low, "maximum": high, "default": default}
    return Parameter(description=description, schema_extra=extra)


_Text: TypeAlias = str | None
_PARAMETERS = (
    "page", "page_size", "source_type", "kind", "asset", "venue", "quote", "interval",
    "category", "search", "since", "until", "cursor",
)  # fmt: skip


@get(
    "/data",
    summary="Normalized market and news records, newest first",
    description=(
        "Market observations (each of a series: venue, base, quote, interval) and news items, "
        "newest first. Filter, then page with page/page_size or follow next_cursor."
    ),
    responses={
        200: ResponseSpec(DataPage, description="A page of records"),
        **error_responses(400, 503),
    },
)
async def list_data(
    request: Request[Any, Any, Any],
    page: Annotated[
        _Text, _integer("Page number (offset pagination; omit with cursor)", 1, 1, 10**9)
    ] = None,
    page_size: Annotated[_Text, _integer("Rows per page", 50, 1, MAX_PAGE_SIZE)] = None,
    source_type: Annotated[
        list[str] | None,
        Parameter(description="csv, coinpaprika, coingecko, rss; repeat and/or comma-separate"),
    ] = None,
    kind: Annotated[_Text, _text("market or news", enum=list(KINDS))] = None,
    asset: Annotated[
        _Text, _text("Asset id, slug, or symbol (any case); news that mention it too")
    ] = None,
    venue: Annotated[_Text, _text("Exchange or aggregator of the series (e.g. binance)")] = None,
    quote: Annotated[
        _Text, _text("Quote currency of the series (e.g. USD, USDT, BTC; or unknown)")
    ] = None,
    interval: Annotated[
        _Text, _text("Interval of the series (e.g. 1h, 1d, snapshot; or unknown)")
    ] = None,
    category: Annotated[_Text, _text("News category (exact match)")] = None,
    search: Annotated[_Text, _text("Full-text search of news title and summary")] = None,
    since: Annotated[
        _Text, _text("source_timestamp >= since (ISO 8601; no offset = UTC)", format="date-time")
    ] = None,
    until: Annotated[
        _Text, _text("source_timestamp < until (ISO 8601; no offset = UTC)", format="date-time")
    ] = None,
    cursor: Annotated[_Text, _text("next_cursor of a previous page (same filters)")] = None,
) -> Answer:
    # The caches and the database are not Litestar dependencies: resolving one costs about a
    # tenth of a page rendered afresh.
    caches, db = caches_of(request), database_of(request)

    def prepare() -> tuple[frozenset[str], Render]:
        params = {key: request.query_params.getall(key) for key in request.query_params}
        errors = ParamErrors()
        errors.unknown(params, _PARAMETERS)
        query = parse_query(params, errors)
        return query.sources_read(), lambda: render_page(db, caches, query)

    return await cached_json(request, caches, prepare)
