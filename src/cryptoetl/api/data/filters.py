"""The filters of a ``/data`` request as SQL: its *shape* (which filters it uses; the SQL text
depends on nothing else, so asyncpg prepares each statement once per connection), the values
bound to it, and the conditions on each table.

Series filters (``asset``, ``venue``, ``quote``, ``interval``) become a list of series ids on
the observations; ``asset`` also selects the news that mention the asset (GIN index).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cryptoetl.api.data.query import UNKNOWN, DataQuery
from cryptoetl.config import SOURCE_TYPES


class Shape(NamedTuple):
    """Which filters a request uses: the SQL text depends on this and nothing else."""

    market: bool
    news: bool
    sources: tuple[str, ...]  # the source_type values asked for, sorted (see source_condition)
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
    exact_total: bool  # the page statement sums the kept counts (see the totals module)


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


def shape_of(query: DataQuery, *, exact_total: bool) -> Shape:
    return Shape(
        market=query.wants_market,
        news=query.wants_news,
        sources=tuple(sorted(query.source_types)),
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
        exact_total=exact_total,
    )


def values_of(query: DataQuery) -> dict[str, Any]:
    asset_id = None
    if query.asset and query.asset.isascii() and query.asset.isdigit() and len(query.asset) <= 18:
        asset_id = int(query.asset)
    return {
        "limit": query.page_size,
        "offset": (query.page - 1) * query.page_size,
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


def source_condition(shape: Shape, alias: str) -> str:
    """``source_type`` among the requested sources, written as literals (validated names of
    :data:`~cryptoetl.config.SOURCE_TYPES`, never client text), not bound as an array: the API
    runs generic plans, and PostgreSQL prunes the partitions of ``market_observations`` on
    constants at plan time but not on an array parameter. Bound, a ``source_type=coingecko``
    page read every partition's index: 100 ms on 200k CSV rows when CoinGecko had none."""
    unknown = set(shape.sources) - set(SOURCE_TYPES)
    if unknown:  # parse_query refuses them with a 400; this guards the SQL text itself
        raise ValueError(f"not a source type: {sorted(unknown)}")
    names = ", ".join(f"'{source}'" for source in shape.sources)
    return f"{alias}.source_type IN ({names})"


def series_conditions(shape: Shape, p: Params, alias: str) -> list[str]:
    conds = []
    if shape.sources:
        conds.append(source_condition(shape, alias))
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


def series_filtered(shape: Shape) -> bool:
    """Whether the request selects observations by series (asset, venue, quote, interval)."""
    return (
        shape.asset
        or shape.venue
        or shape.quote
        or shape.interval
        or (shape.unknown_quote or shape.unknown_interval)
    )


def time_conditions(shape: Shape, p: Params, alias: str) -> list[str]:
    conds = []
    if shape.since:
        conds.append(f"{alias}.source_timestamp >= {p('since', 'timestamptz')}")
    if shape.until:
        conds.append(f"{alias}.source_timestamp < {p('until', 'timestamptz')}")
    if shape.cursor:
        # The first condition is implied by the second; alone it bounds an index on
        # (..., source_timestamp) that does not end in id, as the per-series one does.
        after_ts = p("after_ts", "timestamptz")
        conds.append(f"{alias}.source_timestamp <= {after_ts}")
        conds.append(
            f"({alias}.source_timestamp, {alias}.id) < ({after_ts}, {p('after_id', 'bigint')})"
        )
    return conds


def market_conditions(shape: Shape, p: Params, series_ids: str | None = None) -> list[str]:
    """Conditions on ``market_observations o``; ``series_ids`` is SQL for the ids of the
    selected series when the statement has them already (else they are selected here)."""
    conds = []
    if shape.sources:
        conds.append(source_condition(shape, "o"))
    if series_filtered(shape):
        if series_ids is None:
            series = where(series_conditions(shape, p, "s"))
            series_ids = f"ARRAY(SELECT s.id FROM market_series s WHERE {series})"
        conds.append(f"o.series_id = ANY({series_ids})")
    return conds + time_conditions(shape, p, "o")


def news_conditions(shape: Shape, p: Params) -> list[str]:
    conds = []
    if shape.sources:
        conds.append(source_condition(shape, "n"))
    if shape.asset:
        conds.append(f"n.mentioned_asset_ids && {asset_ids(p)}")
    if shape.category:
        conds.append(f"n.category = {p('category', 'text')}")
    if shape.search:
        conds.append(f"n.search_vector @@ websearch_to_tsquery('english', {p('search', 'text')})")
    return conds + time_conditions(shape, p, "n")


def where(conds: list[str]) -> str:
    return " AND ".join(conds) or "TRUE"
