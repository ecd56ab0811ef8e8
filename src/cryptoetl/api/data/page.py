"""The ``/data`` page statement: the newest rows of two tables merged, rendered by concatenation.

``market_observations`` (partitioned by source: a ``source_type`` filter prunes partitions) and
``news_items`` are each read newest first on their ``(source_timestamp DESC, id DESC)`` index,
so any cursor depth costs what the first page costs; the page (``page_size + 1`` rows, the extra
one meaning "more") is the merge of both. A series filter selecting a few series reads each of
them on its own ``(source_type, series_id, source_timestamp)`` index instead (see
:data:`PER_SERIES_MAX_ROWS`). No JSON is built in SQL, no window function runs, and
no asset is looked up: news items carry their stored documents, and an observation's series
document (:mod:`cryptoetl.pipeline.documents`), which never changes once written, is kept by
the API process (:mod:`cryptoetl.api.data.render`), which appends it to the values.

Each row carries, when the shape asks for it, the exact total from the kept counts (computed
once); a page without rows asks for it alone. Estimates are not computed here: see
:mod:`cryptoetl.api.data.totals`.
"""

from __future__ import annotations

from functools import lru_cache

from cryptoetl.api.data.filters import (
    Params,
    Shape,
    Statement,
    asset_ids,
    market_conditions,
    news_conditions,
    series_conditions,
    series_filtered,
    source_condition,
    time_conditions,
    where,
)

# Both kinds share one row shape, so they merge in one ordered list (columns as in render.py).
_COLUMNS = (
    "id", "source_timestamp", "series_id", "price", "open", "high", "low", "volume_base",
    "volume_quote", "market_cap", "change_pct", "rank", "metadata", "doc",
)  # fmt: skip
# What the page returns of a merged row: the timestamp as whole microseconds since 1970 (a
# float8 of them is exact to well below a microsecond for the next two centuries, and rounds
# back exactly), because decoding a timestamptz costs asyncpg a datetime per row, an eighth of
# the API's whole work for a page, where an integer costs next to nothing.
_PAGE_ROW = ", ".join(
    "(date_part('epoch', q.source_timestamp) * 1000000)::int8 AS source_us"
    if column == "source_timestamp"
    else f"q.{column}"
    for column in _COLUMNS
)
_MARKET_ROW = (
    "o.id, o.source_timestamp, o.series_id, o.price, o.open, o.high, o.low, o.volume_base, "
    "o.volume_quote, o.market_cap, o.change_pct, o.rank, o.metadata::text AS metadata, "
    "NULL::text AS doc"
)
_NEWS_ROW = (
    "n.id, n.source_timestamp, NULL::int AS series_id, NULL::float8 AS price, "
    "NULL::float8 AS open, NULL::float8 AS high, NULL::float8 AS low, "
    "NULL::float8 AS volume_base, NULL::float8 AS volume_quote, NULL::float8 AS market_cap, "
    "NULL::float8 AS change_pct, NULL::int AS rank, NULL::text AS metadata, n.doc"
)


# A series filter reads each of the k selected series newest first on its own index, a page deep
# (d = page size + 1 + offset rows each, k * d at most), or the table newest first keeping the
# rows of its series (about d * T / S rows: T the observations of the partitions it reads, S
# those of the selected series, from the kept counts; unbounded when they lie far back). Per
# series when that is cheap in any case (k * d <= PER_SERIES_MAX_ROWS: 64 series at page 1) or
# cheaper by those counts (k * S <= T). The planner cannot choose: the series are known only
# when the statement runs, so both plans are in the statement, each behind a one-time filter.
# (Per series alone, a deep offset page of 42 dense series read 13x the rows of the scan by time.)
PER_SERIES_MAX_ROWS = 64 * 51


def _depth(p: Params, shape: Shape) -> str:
    return f"{p('limit', 'int')} + 1" + (f" + {p('offset', 'bigint')}" if shape.offset else "")


def _side(select: str, table: str, conds: list[str], p: Params, shape: Shape) -> str:
    return (
        f"(SELECT {select} FROM {table} WHERE {where(conds)} "
        f"ORDER BY source_timestamp DESC, id DESC LIMIT {_depth(p, shape)})"
    )


def _picked(shape: Shape, p: Params) -> str:
    """The selected series, once per statement (the ``WITH`` of a series-filtered page)."""
    series = where(series_conditions(shape, p, "s"))
    return (
        "WITH picked AS MATERIALIZED (SELECT s.id AS series, s.source_type AS source, "
        f"s.observations AS n FROM market_series s WHERE {series}) "
    )


def _market_sides(shape: Shape, p: Params) -> list[str]:
    """The observations side of a page: one read by time, or (series filters) two gated ones.

    Read by time, a filter on a few rare series scanned the whole table when they had no rows
    in the window: ``venue=…&quote=…`` took 95 ms on 200k rows where read per series it takes
    well under one."""
    table = "market_observations o"
    if not series_filtered(shape):
        return [_side(_MARKET_ROW, table, market_conditions(shape, p), p, shape)]
    by_time = market_conditions(shape, p, "ARRAY(SELECT series FROM picked)")
    # An observation's source_type is its series' (the writer takes both from the series key):
    # stated here so the partition is pruned and the unique index's leading column is bound.
    newest = where(
        ["o.source_type = s.source", "o.series_id = s.series", *time_conditions(shape, p, "o")]
    )
    depth = _depth(p, shape)
    per_series = (
        f"picked s CROSS JOIN LATERAL (SELECT * FROM {table} WHERE {newest} "
        f"ORDER BY o.source_timestamp DESC LIMIT {depth}) o"
    )
    cheap = f"(SELECT count(*) FROM picked) * ({depth}) <= {PER_SERIES_MAX_ROWS}"
    # T counts what the read by time would scan: the requested sources' partitions only.
    scanned = where([source_condition(shape, "s")] if shape.sources else [])
    cheaper = (
        "(SELECT count(*) * coalesce(sum(n), 0) FROM picked) "
        f"<= (SELECT coalesce(sum(s.observations), 0) FROM market_series s WHERE {scanned})"
    )
    per_series_wins = f"({cheap} OR {cheaper})"
    return [
        _side(_MARKET_ROW, table, [*by_time, f"NOT {per_series_wins}"], p, shape),
        _side(_MARKET_ROW, per_series, [per_series_wins], p, shape),
    ]


def _news_total(shape: Shape, p: Params) -> str:
    """The news items the filters select, from the kept counts (``asset_id`` 0: every item)."""
    conds = [f"c.asset_id = ANY({asset_ids(p)})" if shape.asset else "c.asset_id = 0"]
    if shape.sources:
        conds.append(source_condition(shape, "c"))
    return f"(SELECT coalesce(sum(c.n), 0) FROM news_counts c WHERE {where(conds)})"


def exact_total(shape: Shape, p: Params) -> str:
    """The sum of the kept counts over what the filters select."""
    parts = []
    if shape.market:
        series = where(series_conditions(shape, p, "s"))
        parts.append(
            f"(SELECT coalesce(sum(s.observations), 0) FROM market_series s WHERE {series})"
        )
    if shape.news:
        parts.append(_news_total(shape, p))
    return "(" + (" + ".join(parts) or "0") + ")::bigint"


@lru_cache(maxsize=512)
def bounds_statement(shape: Shape) -> Statement:
    """What a time-window estimate interpolates (:mod:`cryptoetl.api.data.window`): each
    selected series' first and last timestamp (epoch seconds) and count, and the news' (their
    time bounds: two index probes)."""
    p = Params()
    parts = []
    if shape.market:
        series = where(series_conditions(shape, p, "s"))
        parts.append(
            "SELECT date_part('epoch', s.first_ts), date_part('epoch', s.last_ts), "
            f"s.observations::bigint FROM market_series s WHERE {series}"
        )
    if shape.news:
        parts.append(
            "SELECT date_part('epoch', min(n.source_timestamp)), "
            f"date_part('epoch', max(n.source_timestamp)), {_news_total(shape, p)}::bigint "
            "FROM news_items n"
        )
    body = " UNION ALL ".join(parts) or "SELECT NULL::float8, NULL::float8, 0::bigint WHERE FALSE"
    return Statement(body, tuple(p.names))


@lru_cache(maxsize=512)
def page_statement(shape: Shape) -> Statement:
    """The page's rows (see :mod:`cryptoetl.api.data.render` for their columns), each with the
    exact total when the shape asks for it (computed once: an uncorrelated subquery)."""
    p = Params()
    sides = []
    if shape.market:
        sides.extend(_market_sides(shape, p))
    if shape.news:
        sides.append(_side(_NEWS_ROW, "news_items n", news_conditions(shape, p), p, shape))
    limit = p("limit", "int")
    offset = f" OFFSET {p('offset', 'bigint')}" if shape.offset else ""
    rows = " UNION ALL ".join(sides) or f"(SELECT {_MARKET_ROW} FROM market_observations o LIMIT 0)"
    picked = _picked(shape, p) if shape.market and series_filtered(shape) else ""
    sql = f"""{picked}SELECT {_PAGE_ROW}, {total_sql(shape, p)}
FROM ({rows}) q ORDER BY source_timestamp DESC, id DESC LIMIT {limit} + 1{offset}"""
    return Statement(sql, tuple(p.names))


def total_sql(shape: Shape, p: Params) -> str:
    return exact_total(shape, p) if shape.exact_total else "NULL::bigint"


@lru_cache(maxsize=512)
def total_statement(shape: Shape) -> Statement:
    """The exact total alone, for a page without rows (which carry it otherwise)."""
    p = Params()
    return Statement(f"SELECT {total_sql(shape, p)}", tuple(p.names))


SERIES_DOCS = "SELECT id, doc, key, quote, interval FROM market_series WHERE id = ANY($1::int[])"


@lru_cache(maxsize=512)
def estimate_statement(shape: Shape) -> Statement:
    """The planner's row estimate for the filters (for search and category, which no kept count
    covers). Cursor and paging do not change a total."""
    p = Params()
    unpaged = shape._replace(cursor=False)
    counts = []
    if shape.market:
        counts.append(
            f"SELECT 1 FROM market_observations o WHERE {where(market_conditions(unpaged, p))}"
        )
    if shape.news:
        counts.append(f"SELECT 1 FROM news_items n WHERE {where(news_conditions(unpaged, p))}")
    body = " UNION ALL ".join(counts) or "SELECT 1 WHERE FALSE"
    return Statement(f"EXPLAIN (FORMAT JSON) {body}", tuple(p.names))
