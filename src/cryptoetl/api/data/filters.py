"""The filters of a ``/data`` request as SQL: its *shape* (which filters it uses; the SQL text
depends on nothing else, so asyncpg prepares each statement once per connection), the values
bound to it, and the conditions on each table.

Series filters (``asset``, ``venue``, ``quote``, ``interval``) become a list of series ids on
the observations; ``asset`` also selects the news that mention the asset (GIN index).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

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
    total: TotalMode


# How a page statement gets the total: "exact" from the kept counts, "window" interpolated from
# the series' bounds (time filters only), "none" (known already, or estimated by the planner).
TotalMode = Literal["exact", "window", "none"]


class Statement(NamedTuple):
    sql: str
    params: tuple[str, ...]  # value names, in $1..$n order


class Params:
    """Numbers named values as ``$n`` (a name used twice gets the same number)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str, cast: str) -> str:
        if name not in self.names:
            self.names.append(name)
        return f"${self.names.index(name) + 1}::{cast}"


def shape_of(query: DataQuery, total: TotalMode) -> Shape:
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
        total=total,
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


def asset_ids(p: Params) -> str:
    """Ids the ``asset`` parameter names: an id, a slug, or a symbol (any case; a symbol can
    name several coins). Resolved inside the statement to save a round trip."""
    return (
        "ARRAY(SELECT a.id FROM assets a WHERE a.slug = lower({t}) OR a.symbol = upper({t}) "
        "OR a.id = {i})"
    ).format(t=p("asset", "text"), i=p("asset_id", "bigint"))


def series_conditions(shape: Shape, p: Params, alias: str) -> list[str]:
    conds = []
    if shape.sources:
        conds.append(f"{alias}.source_type = ANY({p('sources', 'text[]')})")
    if shape.asset:
        conds.append(f"{alias}.asset_id = ANY({asset_ids(p)})")
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


def _time_conditions(shape: Shape, p: Params, alias: str) -> list[str]:
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


def market_conditions(shape: Shape, p: Params) -> list[str]:
    conds = []
    if shape.sources:
        conds.append(f"o.source_type = ANY({p('sources', 'text[]')})")
    if _series_filtered(shape):
        series = " AND ".join(series_conditions(shape, p, "s"))
        conds.append(f"o.series_id = ANY(ARRAY(SELECT s.id FROM market_series s WHERE {series}))")
    return conds + _time_conditions(shape, p, "o")


def news_conditions(shape: Shape, p: Params) -> list[str]:
    conds = []
    if shape.sources:
        conds.append(f"n.source_type = ANY({p('sources', 'text[]')})")
    if shape.asset:
        conds.append(f"n.mentioned_asset_ids && {asset_ids(p)}")
    if shape.category:
        conds.append(f"n.category = {p('category', 'text')}")
    if shape.search:
        conds.append(f"n.search_vector @@ websearch_to_tsquery('english', {p('search', 'text')})")
    return conds + _time_conditions(shape, p, "n")


def where(conds: list[str]) -> str:
    return " AND ".join(conds) or "TRUE"
