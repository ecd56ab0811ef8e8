"""``GET /data``: normalized records, newest first, filtered, paginated by page or by cursor.

Order: ``source_timestamp DESC, id DESC`` (the ``ix_records_*_ts_id`` indexes).

Pagination
    ``page``/``page_size`` address pages by offset (``page * page_size`` is capped at
    :data:`MAX_OFFSET` rows). Every answer also carries ``next_cursor``: an opaque keyset cursor
    for the row after the last one returned, ``null`` when nothing follows. A request with
    ``cursor`` reads ``WHERE (source_timestamp, id) < (:ts, :id)``, so any depth costs the
    same as the first page; ``page`` must then be omitted (or 1) and ``pagination.page`` is
    ``null``. A cursor is bound to the filters it was issued for (it carries a hash of them):
    reusing it with other filters is a 400, not a silently wrong page.

Cursor format
    ``base64url(version:u8, source_timestamp_us:i64, id:i64, filter_hash:8 bytes)``, unpadded.

Totals (``pagination.total_records``) never count ``records`` per request:

* only ``source_type``/``kind``/``asset`` filters (or none): **exact**, ``SUM(n)`` over
  ``record_counts``, which triggers keep exact in the same transaction as every write;
* any other filter (``category``, ``search``, ``since``, ``until``): **estimate** from the
  planner, the top ``Plan Rows`` of ``EXPLAIN (FORMAT JSON)`` of the filtered count, flagged
  ``total_is_estimate: true`` and cached for at most :data:`ESTIMATE_TTL_S` seconds. The
  page corrects it where it proves more: the last page of an offset walk gives the exact
  count (no EXPLAIN then), rows at an offset a lower bound, an empty page an upper bound.

Speed: PostgreSQL builds the JSON array of the page itself (``json_agg``), and the exact total
rides in the same statement, so a request is one round trip and no Python code touches a row;
the SQL text is built once per filter *shape* and asyncpg prepares it once per connection.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import math
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, NamedTuple, TypeAlias

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from cryptoetl.api.deps import Database
from cryptoetl.api.errors import JSON, ParamErrors, latency_ms, request_id_of
from cryptoetl.api.schemas import (
    DataEnvelope,
    DataMeta,
    DataPage,
    ErrorBody,
    FiltersApplied,
    Pagination,
)
from cryptoetl.config import SOURCE_TYPES

KINDS = ("market", "news")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Offsets make PostgreSQL walk every skipped row; past this, clients follow next_cursor.
MAX_OFFSET = 100_000
ESTIMATE_TTL_S = 1.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = struct.Struct(">Bqq8s")
_CURSOR_VERSION = 1


@dataclass(frozen=True, slots=True)
class DataQuery:
    """A validated /data request."""

    page: int
    page_size: int
    source_types: tuple[str, ...] = ()
    kind: str | None = None
    asset: str | None = None
    category: str | None = None
    search: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, int] | None = None  # decoded cursor: (source_timestamp, id)

    @property
    def exact_total(self) -> bool:
        return self.category is None and self.search is None and not (self.since or self.until)

    def fingerprint(self) -> bytes:
        """What a cursor is bound to: the filters, not the page size."""
        key = [
            sorted(self.source_types),
            self.kind,
            self.asset.lower() if self.asset else None,
            self.category,
            self.search,
            self.since.isoformat() if self.since else None,
            self.until.isoformat() if self.until else None,
        ]
        return hashlib.blake2b(msgspec.json.encode(key), digest_size=8).digest()

    def filters_applied(self) -> FiltersApplied:
        return FiltersApplied(
            source_type=list(self.source_types) or None,
            kind=self.kind,
            asset=self.asset,
            category=self.category,
            search=self.search,
            since=self.since,
            until=self.until,
            cursor=self.after is not None,
        )


# --- parameters ---------------------------------------------------------------------------------


def parse_query(
    *,
    page: str | None,
    page_size: str | None,
    source_type: list[str] | None,
    kind: str | None,
    asset: str | None,
    category: str | None,
    search: str | None,
    since: str | None,
    until: str | None,
    cursor: str | None,
) -> DataQuery:
    """Validate every parameter; one :class:`InvalidParameters` names all the bad ones."""
    errors = ParamErrors()
    page_n = errors.integer("page", page, 1, 1, 10**9)
    size = errors.integer("page_size", page_size, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    query = DataQuery(
        page=page_n,
        page_size=size,
        source_types=errors.choices("source_type", source_type or (), SOURCE_TYPES),
        kind=errors.choice("kind", kind, KINDS),
        asset=errors.text("asset", asset, 100),
        category=errors.text("category", category),
        search=errors.text("search", search, 500),
        since=errors.timestamp("since", since),
        until=errors.timestamp("until", until),
    )
    if query.since and query.until and query.since >= query.until:
        errors.add("until", "must be later than since")
    after = None
    if cursor:
        if page not in (None, "", "1"):
            errors.add("page", "must be omitted (or 1) when cursor is given")
        after = _decode_cursor(errors, cursor, query.fingerprint())
    elif (page_n - 1) * size > MAX_OFFSET:
        errors.add("page", f"page * page_size must stay within {MAX_OFFSET} rows; use next_cursor")
    errors.raise_if_any()
    return query if after is None else dataclasses.replace(query, after=after)


def encode_cursor(ts: datetime, row_id: int, fingerprint: bytes) -> str:
    micros = (ts - _EPOCH) // timedelta(microseconds=1)
    packed = _CURSOR.pack(_CURSOR_VERSION, micros, row_id, fingerprint)
    return base64.urlsafe_b64encode(packed).rstrip(b"=").decode()


def _decode_cursor(
    errors: ParamErrors, raw: str, fingerprint: bytes
) -> tuple[datetime, int] | None:
    try:
        packed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        version, micros, row_id, bound_to = _CURSOR.unpack(packed)
        ts = _EPOCH + timedelta(microseconds=micros)
    except (binascii.Error, ValueError, struct.error, OverflowError):
        errors.add("cursor", "is not a cursor issued by this API")
        return None
    if version != _CURSOR_VERSION:
        errors.add("cursor", "is not a cursor issued by this API")
        return None
    if bound_to != fingerprint:
        errors.add("cursor", "was issued for other filters; repeat the filters it came with")
        return None
    return ts, row_id


# --- SQL ------------------------------------------------------------------------------------------


class Shape(NamedTuple):
    """Which filters a request uses: the SQL text depends on this and nothing else."""

    sources: int  # 0: none, 1: one, 2: several
    kind: bool
    asset: bool
    category: bool
    search: bool
    since: bool
    until: bool
    cursor: bool
    offset: bool
    exact_total: bool


class Statement(NamedTuple):
    sql: str
    params: tuple[str, ...]  # value names, in $1..$n order


class _Params:
    """Numbers named values as ``$n`` (a name used twice gets the same number)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str, cast: str) -> str:
        if name not in self.names:
            self.names.append(name)
        return f"${self.names.index(name) + 1}::{cast}"


def shape_of(query: DataQuery) -> Shape:
    return Shape(
        sources=min(len(query.source_types), 2),
        kind=query.kind is not None,
        asset=query.asset is not None,
        category=query.category is not None,
        search=query.search is not None,
        since=query.since is not None,
        until=query.until is not None,
        cursor=query.after is not None,
        offset=query.after is None and query.page > 1,
        exact_total=query.exact_total,
    )


def values_of(query: DataQuery) -> dict[str, Any]:
    asset_id = None
    if query.asset and query.asset.isdigit() and len(query.asset) <= 18:
        asset_id = int(query.asset)
    return {
        "limit": query.page_size,
        "offset": (query.page - 1) * query.page_size,
        "source": query.source_types[0] if query.source_types else None,
        "sources": list(query.source_types),
        "kind": query.kind,
        "asset": query.asset,
        "asset_id": asset_id,
        "category": query.category,
        "search": query.search,
        "since": query.since,
        "until": query.until,
        "after_ts": query.after[0] if query.after else None,
        "after_id": query.after[1] if query.after else None,
    }


def _asset_ids(p: _Params) -> str:
    """Ids the ``asset`` parameter names: an id, a slug, or a symbol (any case; a symbol can
    name several coins). Resolved inside the statement to save a round trip."""
    return (
        "ARRAY(SELECT a.id FROM assets a WHERE a.slug = lower({t}) OR a.symbol = upper({t}) "
        "OR a.id = {i})"
    ).format(t=p("asset", "text"), i=p("asset_id", "bigint"))


def _count_conditions(shape: Shape, p: _Params, alias: str) -> list[str]:
    """Conditions on the columns ``record_counts`` shares with ``records``."""
    conds = []
    if shape.sources == 1:
        conds.append(f"{alias}.source_type = {p('source', 'text')}")
    elif shape.sources == 2:
        conds.append(f"{alias}.source_type = ANY({p('sources', 'text[]')})")
    if shape.kind:
        conds.append(f"{alias}.kind = {p('kind', 'text')}")
    if shape.asset:
        conds.append(f"{alias}.asset_id = ANY({_asset_ids(p)})")
    return conds


def _filter_conditions(shape: Shape, p: _Params) -> list[str]:
    conds = _count_conditions(shape, p, "r")
    if shape.category:
        conds.append(f"r.category = {p('category', 'text')}")
    if shape.search:
        conds.append(f"r.search_vector @@ websearch_to_tsquery('english', {p('search', 'text')})")
    if shape.since:
        conds.append(f"r.source_timestamp >= {p('since', 'timestamptz')}")
    if shape.until:
        conds.append(f"r.source_timestamp < {p('until', 'timestamptz')}")
    return conds


_ASSET_JSON = (
    "json_build_object('id', {a}.id, 'slug', {a}.slug, 'symbol', {a}.symbol, 'name', {a}.name)"
)
_ITEM_JSON = f"""json_build_object(
        'id', q.id, 'source_type', q.source_type, 'source_id', q.source_id, 'kind', q.kind,
        'title', q.title, 'description', q.summary,
        'value', CASE WHEN q.kind = 'market' THEN q.price_usd END,
        'category', q.category, 'tags', q.tags,
        'source_timestamp', (to_json(q.source_timestamp AT TIME ZONE 'UTC') #>> '{{}}') || 'Z',
        'metadata', q.metadata,
        'price_usd', q.price_usd, 'market_cap_usd', q.market_cap_usd,
        'volume_24h_usd', q.volume_24h_usd, 'change_24h_pct', q.change_24h_pct, 'rank', q.rank,
        'symbol', q.symbol, 'url', q.url, 'author', q.author,
        'asset', CASE WHEN a.id IS NOT NULL THEN {_ASSET_JSON.format(a="a")} END,
        'mentioned_assets', coalesce(mentions.assets, '[]'::json)
    )"""
_COLUMNS = (
    "r.id, r.source_timestamp, r.kind, r.source_type, r.source_id, r.asset_id, r.symbol, "
    "r.price_usd, r.market_cap_usd, r.volume_24h_usd, r.change_24h_pct, r.rank, r.title, "
    "r.summary, r.url, r.author, r.category, r.tags, r.mentioned_asset_ids, r.metadata"
)


@lru_cache(maxsize=512)
def page_statement(shape: Shape) -> Statement:
    """One statement: the page as a JSON array (page_size + 1 rows read, to know whether a
    next page exists), the key of its last row for ``next_cursor``, and the exact total when
    the filters allow it. Mentioned assets of the whole page are resolved in one join
    (``mentions``), not one lookup per news row."""
    p = _Params()
    limit = p("limit", "int")
    conds = _filter_conditions(shape, p)
    if shape.cursor:
        conds.append(
            f"(r.source_timestamp, r.id) < ({p('after_ts', 'timestamptz')}, "
            f"{p('after_id', 'bigint')})"
        )
    offset = f" OFFSET {p('offset', 'bigint')}" if shape.offset else ""
    total = "NULL::bigint"
    if shape.exact_total:
        where = " AND ".join(_count_conditions(shape, p, "c")) or "TRUE"
        total = f"(SELECT coalesce(sum(c.n), 0)::bigint FROM record_counts c WHERE {where})"
    sql = f"""WITH page AS (
    SELECT {_COLUMNS}
    FROM records r
    WHERE {" AND ".join(conds) or "TRUE"}
    ORDER BY r.source_timestamp DESC, r.id DESC
    LIMIT {limit} + 1{offset}
), numbered AS (
    SELECT page.*, row_number() OVER (ORDER BY source_timestamp DESC, id DESC) AS n FROM page
), mentions AS (
    SELECT u.record_id, json_agg({_ASSET_JSON.format(a="m")} ORDER BY u.ord) AS assets
    FROM (
        SELECT q.id AS record_id, x.id, x.ord
        FROM numbered q, unnest(q.mentioned_asset_ids) WITH ORDINALITY AS x(id, ord)
    ) u JOIN assets m ON m.id = u.id
    GROUP BY u.record_id
)
SELECT
    coalesce(json_agg({_ITEM_JSON} ORDER BY q.n) FILTER (WHERE q.n <= {limit}), '[]')::text,
    count(*),
    max(q.source_timestamp) FILTER (WHERE q.n = {limit}),
    max(q.id) FILTER (WHERE q.n = {limit}),
    {total}
FROM numbered q
LEFT JOIN assets a ON a.id = q.asset_id
LEFT JOIN mentions ON mentions.record_id = q.id"""
    return Statement(sql, tuple(p.names))


@lru_cache(maxsize=512)
def estimate_statement(shape: Shape) -> Statement:
    """The planner's row estimate for the filters (cursor and paging do not change a total)."""
    p = _Params()
    where = " AND ".join(_filter_conditions(shape, p)) or "TRUE"
    return Statement(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM records r WHERE {where}", tuple(p.names))


def bind(statement: Statement, values: dict[str, Any]) -> list[Any]:
    return [values[name] for name in statement.params]


class _TtlCache:
    """A small per-process cache of planner estimates; entries live ``ttl`` seconds."""

    def __init__(self, ttl: float, max_items: int = 1024) -> None:
        self._ttl = ttl
        self._max = max_items
        self._items: dict[Any, tuple[float, int]] = {}

    def get(self, key: Any) -> int | None:
        hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: Any, value: int) -> None:
        if len(self._items) >= self._max:
            self._items.clear()  # crude, but bounded; the TTL keeps the cache tiny anyway
        self._items[key] = (time.monotonic() + self._ttl, value)


_estimates = _TtlCache(ESTIMATE_TTL_S)


def _plan_rows(explain: Any) -> int:
    plan = msgspec.json.decode(explain) if isinstance(explain, str | bytes) else explain
    return max(0, int(plan[0]["Plan"]["Plan Rows"]))


async def _estimate(conn: Any, shape: Shape, values: dict[str, Any]) -> int:
    statement = estimate_statement(shape)
    args = bind(statement, values)
    key = (shape, *(tuple(a) if isinstance(a, list) else a for a in args))
    cached = _estimates.get(key)
    if cached is None:
        cached = _plan_rows(await conn.fetchval(statement.sql, *args))
        _estimates.put(key, cached)
    return cached


class PageResult(NamedTuple):
    data: str
    total: int
    is_estimate: bool
    next_after: tuple[datetime, int] | None


async def fetch_page(db: Database, query: DataQuery) -> PageResult:
    shape = shape_of(query)
    statement = page_statement(shape)
    values = values_of(query)
    async with db.connection() as conn:
        data, fetched, last_ts, last_id, total = await conn.fetchrow(
            statement.sql, *bind(statement, values)
        )
        if total is None:
            total = proven_total(query, fetched)
        if total is None:
            total = consistent_total(await _estimate(conn, shape, values), query, fetched)
    has_more = fetched > query.page_size
    return PageResult(data, total, not shape.exact_total, (last_ts, last_id) if has_more else None)


def proven_total(query: DataQuery, fetched: int) -> int | None:
    """The total when this page proves it: an offset page that is the last one.

    ``fetched`` counts the rows read (up to page_size + 1, the extra one meaning "more").
    """
    if query.after is not None or fetched > query.page_size:
        return None
    skipped = (query.page - 1) * query.page_size
    if fetched == 0 and skipped > 0:
        return None  # past the end: we only know total <= skipped
    return skipped + fetched


def consistent_total(estimate: int, query: DataQuery, fetched: int) -> int:
    """Keep a planner estimate consistent with the page: rows at an offset prove
    ``total >= offset + fetched``, an empty page past the end proves ``total <= offset``."""
    if query.after is not None:
        return max(estimate, fetched)
    skipped = (query.page - 1) * query.page_size
    if fetched == 0:
        return min(estimate, skipped)
    return max(estimate, skipped + fetched)


# --- handler ------------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def _text(**schema: Any) -> dict[str, Any]:
    # Values are validated by us (so one 400 can name every bad parameter): Litestar only sees
    # strings, and schema_extra documents the real type.
    return {"type": "string", "one_of": None, **schema}


def _integer(default: int, low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "one_of": None, "minimum": low, "maximum": high, "default": default}


_PageParam: TypeAlias = Annotated[
    str | None,
    Parameter(
        description="Page number (offset pagination; omit with cursor)",
        schema_extra=_integer(1, 1, 10**9),
    ),
]
_PageSizeParam: TypeAlias = Annotated[
    str | None,
    Parameter(description="Rows per page", schema_extra=_integer(50, 1, MAX_PAGE_SIZE)),
]
_SourceParam: TypeAlias = Annotated[
    list[str] | None,
    Parameter(description="csv, coinpaprika, coingecko, rss; repeat and/or comma-separate"),
]
_KindParam: TypeAlias = Annotated[
    str | None, Parameter(description="market or news", schema_extra=_text(enum=list(KINDS)))
]
_AssetParam: TypeAlias = Annotated[
    str | None, Parameter(description="Asset id, slug, or symbol (any case)", schema_extra=_text())
]
_CategoryParam: TypeAlias = Annotated[
    str | None, Parameter(description="News category (exact match)", schema_extra=_text())
]
_SearchParam: TypeAlias = Annotated[
    str | None,
    Parameter(description="Full-text search of title and summary", schema_extra=_text()),
]
_SinceParam: TypeAlias = Annotated[
    str | None,
    Parameter(
        description="source_timestamp >= since (ISO 8601; no offset = UTC)",
        schema_extra=_text(format="date-time"),
    ),
]
_UntilParam: TypeAlias = Annotated[
    str | None,
    Parameter(
        description="source_timestamp < until (ISO 8601; no offset = UTC)",
        schema_extra=_text(format="date-time"),
    ),
]
_CursorParam: TypeAlias = Annotated[
    str | None,
    Parameter(description="next_cursor of a previous page (same filters)", schema_extra=_text()),
]


@get(
    "/data",
    summary="Normalized market and news records, newest first",
    description=__doc__,
    responses={
        200: ResponseSpec(DataPage, description="A page of records"),
        400: ResponseSpec(ErrorBody, description="Invalid parameters", generate_examples=False),
        503: ResponseSpec(ErrorBody, description="Database unavailable", generate_examples=False),
    },
)
async def list_data(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    page: _PageParam = None,
    page_size: _PageSizeParam = None,
    source_type: _SourceParam = None,
    kind: _KindParam = None,
    asset: _AssetParam = None,
    category: _CategoryParam = None,
    search: _SearchParam = None,
    since: _SinceParam = None,
    until: _UntilParam = None,
    cursor: _CursorParam = None,
) -> Response[bytes]:
    query = parse_query(
        page=page,
        page_size=page_size,
        source_type=source_type,
        kind=kind,
        asset=asset,
        category=category,
        search=search,
        since=since,
        until=until,
        cursor=cursor,
    )
    result = await fetch_page(db, query)
    next_cursor = None
    if result.next_after is not None:
        next_cursor = encode_cursor(*result.next_after, query.fingerprint())
    pagination = Pagination(
        page=None if query.after else query.page,
        page_size=query.page_size,
        total_records=result.total,
        total_pages=math.ceil(result.total / query.page_size),
        next_cursor=next_cursor,
        total_is_estimate=result.is_estimate,
    )
    meta = DataMeta(
        request_id=request_id_of(request),
        api_latency_ms=latency_ms(request),
        pagination=pagination,
        filters_applied=query.filters_applied(),
    )
    body = _encoder.encode(DataEnvelope(data=msgspec.Raw(result.data.encode()), metadata=meta))
    return Response(body, media_type=JSON)
