"""``pagination.total_records`` without counting a table per request.

* Filters the kept counts cover (``source_type``, ``kind``, ``asset``, ``venue``, ``quote``,
  ``interval``, or none): **exact**, the sum of ``market_series.observations`` and
  ``news_counts``, computed in the page statement the first time a filter set is seen and then
  kept (:class:`~cryptoetl.api.cache.TaggedCache`) until a commit changes one of its sources.
* ``since``/``until`` only: an **estimate** interpolated from each series' count and time
  bounds (:mod:`cryptoetl.api.data.window`), read once per filter set until its data changes:
  no second round trip, however many different windows clients ask for.
* ``category``/``search``: the planner's **estimate** (``EXPLAIN``), once per filter set until
  its data changes.

Estimates are flagged ``total_is_estimate: true`` and corrected by what the page proves: rows at
an offset are a lower bound, an empty page past the end an upper bound, and the page that
reaches the end of an offset walk gives the exact count (flagged ``false``), which is then kept
for the filter set, so a later page past the end reports it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from cryptoetl.api.data.filters import Shape, bind
from cryptoetl.api.data.page import estimate_statement
from cryptoetl.api.data.query import DataQuery

# Where a page's total comes from: "known" (kept for the filter set), "exact" (the kept counts,
# in the page statement), "window" (interpolated), "planner" (EXPLAIN's estimate).
TotalMode = Literal["known", "exact", "window", "planner"]


@dataclass(frozen=True, slots=True)
class Total:
    value: int
    is_estimate: bool


def total_mode(query: DataQuery, known: Total | None) -> TotalMode:
    """Where the total of a page comes from (see the module doc)."""
    if known is not None:
        return "known"
    if query.exact_total:
        return "exact"
    if query.category is None and query.search is None:
        return "window"
    return "planner"


def _plan_rows(explain: Any) -> int:
    plan = msgspec.json.decode(explain) if isinstance(explain, str | bytes) else explain
    return max(0, int(plan[0]["Plan"]["Plan Rows"]))


async def planner_estimate(conn: Any, shape: Shape, values: dict[str, Any]) -> int:
    statement = estimate_statement(shape)
    return _plan_rows(await conn.fetchval(statement.sql, *bind(statement, values)))


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


def consistent_total(estimated: int, query: DataQuery, fetched: int) -> int:
    """Keep an estimate consistent with the page: rows at an offset prove
    ``total >= offset + fetched``, an empty page past the end proves ``total <= offset``."""
    if query.after is not None:
        return max(estimated, fetched)
    skipped = (query.page - 1) * query.page_size
    if fetched == 0:
        return min(estimated, skipped)
    return max(estimated, skipped + fetched)


def settle(
    query: DataQuery,
    fetched: int,
    computed: int | None,
    known: Total | None,
    mode: TotalMode,
) -> Total:
    """The total to report, from what was known, computed and proven by this page."""
    if known is not None and not known.is_estimate:
        return known
    if mode == "exact" and computed is not None:
        return Total(computed, False)
    proven = proven_total(query, fetched)
    if proven is not None:
        return Total(proven, False)
    estimate = computed if computed is not None else known.value if known else 0
    return Total(consistent_total(estimate, query, fetched), True)
