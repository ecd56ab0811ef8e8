"""The ``/data`` statements, built once per filter *shape* (asyncpg prepares each once per
connection).

A page is the newest rows of two tables merged: ``market_observations`` (partitioned by source:
a ``source_type`` filter prunes partitions) and ``news_items``, each read newest first on its
``(source_timestamp DESC, id DESC)`` index, so any cursor depth costs what the first page costs.
Series filters (``asset``, ``venue``, ``quote``, ``interval``) become a list of series ids;
``asset`` also selects the news that mention the asset (GIN index on the mentions).

Totals that the kept counts cover (no ``category``/``search``/``since``/``until``) ride in the
same statement: the sum of ``market_series.observations`` over the matching series plus
``news_counts`` (per source, or per mentioned asset).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from cryptoetl.api.data.query import UNKNOWN, DataQuery


class Shape(NamedTuple):
    """Which filters a request uses: the SQL text depends on this and nothing else."""

    market: bool
    news: bool
    sources: bool
    asset: bool
    venue: bool
    quote: bool
    interval: bool
    unknown_quote: bool
    unknown_interval: bool
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
        market=query.wants_market,
        news=query.wants_news,
        sources=bool(query.source_types),
        asset=query.asset is not None,
        venue=query.venue is not None,
        quote=query.quote is not None and query.quote != UNKNOWN,
        interval=query.interval is not None and query.interval != UNKNOWN,
        unknown_quote=query.quote == UNKNOWN,
        unknown_interval=query.interval == UNKNOWN,
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
    if query.asset and query.asset.isascii() and query.asset.isdigit() and len(query.asset) <= 18:
        asset_id = int(query.asset)
    return {
        "limit": query.page_size,
        "offset": (query.page - 1) * query.page_size,
        "sources": list(query.source_types),
        "asset": query.asset,
        "asset_id": asset_id,
        "venue": query.venue,
        "quote": query.quote,
        "interval": query.interval,
        "category": query.category,
        "search": query.search,
        "since": query.since,
        "until": query.until,
        "after_ts": query.after[0] if query.after else None,
        "after_id": query.after[1] if query.after else None,
    }


def bind(statement: Statement, values: dict[str, Any]) -> list[Any]:
    return [values[name] for name in statement.params]


def _asset_ids(p: _Params) -> str:
    """Ids the ``asset`` parameter names: an id, a slug, or a symbol (any case; a symbol can
    name several coins). Resolved inside the statement to save a round trip."""
    return (
        "ARRAY(SELECT a.id FROM assets a WHERE a.slug = lower({t}) OR a.symbol = upper({t}) "
        "OR a.id = {i})"
    ).format(t=p("asset", "text"), i=p("asset_id", "bigint"))


def _series_conditions(shape: Shape, p: _Params, alias: str) -> list[str]:
    conds = []
    if shape.sources:
        conds.append(f"{alias}.source_type = ANY({p('sources', 'text[]')})")
    if shape.asset:
        conds.append(f"{alias}.asset_id = ANY({_asset_ids(p)})")
    if shape.venue:
        conds.append(f"{alias}.venue = {p('venue', 'text')}")
    if shape.quote:
        conds.append(f"{alias}.quote = {p('quote', 'text')}")
    if shape.unknown_quote:
        conds.append(f"{alias}.quote IS NULL")
    if shape.interval:
        conds.append(f"{alias}.interval = {p('interval', 'text')}")
    if shape.unknown_interval:
        conds.append(f"{alias}.interval IS NULL")
    return conds


def _series_filtered(shape: Shape) -> bool:
    return (
        shape.asset
        or shape.venue
        or shape.quote
        or shape.interval
        or (shape.unknown_quote or shape.unknown_interval)
    )


def _time_conditions(shape: Shape, p: _Params, alias: str) -> list[str]:
    conds = []
    if shape.since:
        conds.append(f"{alias}.source_timestamp >= {p('since', 'timestamptz')}")
    if shape.until:
        conds.append(f"{alias}.source_timestamp < {p('until', 'timestamptz')}")
    if shape.cursor:
        conds.append(
            f"({alias}.source_timestamp, {alias}.id) < ({p('after_ts', 'timestamptz')}, "
            f"{p('after_id', 'bigint')})"
        )
    return conds


def _market_conditions(shape: Shape, p: _Params) -> list[str]:
    conds = []
    if shape.sources:
        conds.append(f"o.source_type = ANY({p('sources', 'text[]')})")
    if _series_filtered(shape):
        series = " AND ".join(_series_conditions(shape, p, "s"))
        conds.append(f"o.series_id = ANY(ARRAY(SELECT s.id FROM market_series s WHERE {series}))")
    return conds + _time_conditions(shape, p, "o")


def _news_conditions(shape: Shape, p: _Params) -> list[str]:
    conds = []
    if shape.sources:
        conds.append(f"n.source_type = ANY({p('sources', 'text[]')})")
    if shape.asset:
        conds.append(f"n.mentioned_asset_ids && {_asset_ids(p)}")
    if shape.category:
        conds.append(f"n.category = {p('category', 'text')}")
    if shape.search:
        conds.append(f"n.search_vector @@ websearch_to_tsquery('english', {p('search', 'text')})")
    return conds + _time_conditions(shape, p, "n")


def _where(conds: list[str]) -> str:
    return " AND ".join(conds) or "TRUE"


# Both kinds share one row shape (and one item shape), so they merge in one ordered list.
_MARKET_ROW = (
    "o.id, o.source_timestamp, o.source_type, o.series_id, NULL::text AS source_id, "
    "o.price, o.open, o.high, o.low, o.volume_base, o.volume_quote, o.market_cap, "
    "o.change_pct, o.rank, o.metadata, NULL::text AS title, NULL::text AS summary, "
    "NULL::text AS url, NULL::text AS author, NULL::text AS category, NULL::text[] AS tags, "
    "NULL::bigint[] AS mentioned_asset_ids"
)
_NEWS_ROW = (
    "n.id, n.source_timestamp, n.source_type, NULL::int AS series_id, n.source_id, "
    "NULL::float8 AS price, NULL::float8 AS open, NULL::float8 AS high, NULL::float8 AS low, "
    "NULL::float8 AS volume_base, NULL::float8 AS volume_quote, NULL::float8 AS market_cap, "
    "NULL::float8 AS change_pct, NULL::int AS rank, n.metadata, n.title, n.summary, n.url, "
    "n.author, n.category, n.tags, n.mentioned_asset_ids"
)


def iso_utc(column: str) -> str:
    """SQL for a timestamptz as RFC 3339 UTC text ending in ``Z`` (as msgspec writes them)."""
    return f"(to_json({column} AT TIME ZONE 'UTC') #>> '{{}}') || 'Z'"


_ISO = iso_utc("q.source_timestamp")
_ASSET_JSON = (
    "json_build_object('id', {a}.id, 'slug', {a}.slug, 'symbol', {a}.symbol, 'name', {a}.name)"
)
# Legacy USD columns hold only what is really USD (and 24 h): see README, "Units".
_DAILY = "s.interval IN ('snapshot', '1d')"
_ITEM_JSON = f"""json_build_object(
        'id', q.id, 'source_type', q.source_type,
        'source_id', coalesce(q.source_id, s.key || '@' || {_ISO}),
        'kind', CASE WHEN q.series_id IS NULL THEN 'news' ELSE 'market' END,
        'title', coalesce(q.title, a.name), 'description', q.summary,
        'value', CASE WHEN s.quote = 'USD' THEN q.price END,
        'category', q.category, 'tags', coalesce(q.tags, '{{}}'),
        'source_timestamp', {_ISO},
        'metadata', coalesce(q.metadata, '{{}}'::jsonb),
        'price_usd', CASE WHEN s.quote = 'USD' THEN q.price END,
        'market_cap_usd', CASE WHEN s.quote = 'USD' THEN q.market_cap END,
        'volume_24h_usd', CASE WHEN s.quote = 'USD' AND {_DAILY} THEN q.volume_quote END,
        'change_24h_pct', CASE WHEN {_DAILY} THEN q.change_pct END,
        'rank', q.rank, 'symbol', s.symbol, 'url', q.url, 'author', q.author,
        'asset', CASE WHEN a.id IS NOT NULL THEN {_ASSET_JSON.format(a="a")} END,
        'mentioned_assets', coalesce(mentions.assets, '[]'::json),
        'series', CASE WHEN s.id IS NOT NULL THEN json_build_object('id', s.id, 'venue', s.venue,
            'base', s.base, 'quote', s.quote, 'interval', s.interval) END,
        'quote', s.quote, 'price', q.price, 'open', q.open, 'high', q.high, 'low', q.low,
        'volume_base', q.volume_base, 'volume_quote', q.volume_quote,
        'market_cap', q.market_cap, 'change_pct', q.change_pct
    )"""


def _side(select: str, table: str, conds: list[str], p: _Params, shape: Shape) -> str:
    depth = f"{p('limit', 'int')} + 1" + (f" + {p('offset', 'bigint')}" if shape.offset else "")
    return (
        f"(SELECT {select} FROM {table} WHERE {_where(conds)} "
        f"ORDER BY source_timestamp DESC, id DESC LIMIT {depth})"
    )


def _total(shape: Shape, p: _Params) -> str:
    parts = []
    if shape.market:
        series = _where(_series_conditions(shape, p, "s"))
        parts.append(
            f"(SELECT coalesce(sum(s.observations), 0) FROM market_series s WHERE {series})"
        )
    if shape.news:
        conds = [f"c.asset_id = ANY({_asset_ids(p)})" if shape.asset else "c.asset_id = 0"]
        if shape.sources:
            conds.append(f"c.source_type = ANY({p('sources', 'text[]')})")
        parts.append(f"(SELECT coalesce(sum(c.n), 0) FROM news_counts c WHERE {_where(conds)})")
    return "(" + (" + ".join(parts) or "0") + ")::bigint"


@lru_cache(maxsize=512)
def page_statement(shape: Shape) -> Statement:
    """One statement: the page as a JSON array (page_size + 1 rows read, to know whether a
    next page exists), the key of its last row for ``next_cursor``, and the exact total when
    the filters allow it. Mentioned assets of the page's news are resolved in one join."""
    p = _Params()
    sides = []
    if shape.market:
        sides.append(
            _side(_MARKET_ROW, "market_observations o", _market_conditions(shape, p), p, shape)
        )
    if shape.news:
        sides.append(_side(_NEWS_ROW, "news_items n", _news_conditions(shape, p), p, shape))
    limit = p("limit", "int")
    offset = f" OFFSET {p('offset', 'bigint')}" if shape.offset else ""
    rows = " UNION ALL ".join(sides) or f"(SELECT {_MARKET_ROW} FROM market_observations o LIMIT 0)"
    total = _total(shape, p) if shape.exact_total else "NULL::bigint"
    sql = f"""WITH page AS (
    SELECT * FROM ({rows}) u ORDER BY source_timestamp DESC, id DESC LIMIT {limit} + 1{offset}
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
LEFT JOIN market_series s ON s.id = q.series_id
LEFT JOIN assets a ON a.id = s.asset_id
LEFT JOIN mentions ON mentions.record_id = q.id"""
    return Statement(sql, tuple(p.names))


@lru_cache(maxsize=512)
def estimate_statement(shape: Shape) -> Statement:
    """The planner's row estimate for the filters (cursor and paging do not change a total)."""
    p = _Params()
    counts = []
    if shape.market:
        where = _where(_market_conditions(shape._replace(cursor=False), p))
        counts.append(f"SELECT 1 FROM market_observations o WHERE {where}")
    if shape.news:
        where = _where(_news_conditions(shape._replace(cursor=False), p))
        counts.append(f"SELECT 1 FROM news_items n WHERE {where}")
    body = " UNION ALL ".join(counts) or "SELECT 1 WHERE FALSE"
    return Statement(f"EXPLAIN (FORMAT JSON) {body}", tuple(p.names))
