"""``pagination.total_records`` without counting a table per request.

* Filters the kept counts cover (``source_type``, ``kind``, ``asset``, ``venue``, ``quote``,
  ``interval``, or none): **exact**, computed inside the page statement.
* Any other filter (``category``, ``search``, ``since``, ``until``): the planner's **estimate**
  (``EXPLAIN`` of the filtered rows), flagged ``total_is_estimate: true`` and cached for at most
  :data:`ESTIMATE_TTL_S` seconds. The page corrects it where it proves more: the page that
  reaches the end of an offset walk gives the exact count (flagged ``false``), rows at an
  offset a lower bound, an empty page an upper bound.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from cryptoetl.api.data.query import DataQuery
from cryptoetl.api.data.sql import Shape, bind, estimate_statement

ESTIMATE_TTL_S = 1.0


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


async def estimate(conn: Any, shape: Shape, values: dict[str, Any]) -> int:
    statement = estimate_statement(shape)
    args = bind(statement, values)
    key = (shape, *(tuple(a) if isinstance(a, list) else a for a in args))
    cached = _estimates.get(key)
    if cached is None:
        cached = _plan_rows(await conn.fetchval(statement.sql, *args))
        _estimates.put(key, cached)
    return cached


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
    """Keep a planner estimate consistent with the page: rows at an offset prove
    ``total >= offset + fetched``, an empty page past the end proves ``total <= offset``."""
    if query.after is not None:
        return max(estimated, fetched)
    skipped = (query.page - 1) * query.page_size
    if fetched == 0:
        return min(estimated, skipped)
    return max(estimated, skipped + fetched)
