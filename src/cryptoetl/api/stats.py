"""``GET /stats``: checkpoints per source, the most recent runs, and a summary.

Record counts come from the kept counts (``market_series.observations``, ``news_counts``:
exact, no table scan); processed, rejected
and drift totals are sums over ``runs`` (each run stores its own counts), so nothing here reads
the large tables.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency

from cryptoetl.api import params
from cryptoetl.api.deps import Database
from cryptoetl.api.docs import openapi_text
from cryptoetl.api.errors import JSON, error_responses
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.queries import load
from cryptoetl.api.request_context import meta_of
from cryptoetl.api.runs import DEFAULT_LIMIT, MAX_LIMIT, RECENT, run_item
from cryptoetl.api.schemas import (
    CheckpointItem,
    KindCounts,
    Stats,
    StatsSummary,
)

_CHECKPOINTS = load("stats")["checkpoints"]
_TOTALS = load("stats")["totals"]
RECORDS_BY_SOURCE = load("counts")["records_by_source"]


def _checkpoint(row: Any) -> CheckpointItem:
    return CheckpointItem(
        source_type=row["source_type"],
        status=row["status"],
        cursor=msgspec.json.decode(row["cursor"]) if row["cursor"] else {},
        last_run_id=str(row["last_run_id"]) if row["last_run_id"] else None,
        last_success_at=row["last_success_at"],
        last_failure_at=row["last_failure_at"],
        last_error=row["last_error"],
        records_total=row["records_total"],
        last_run_processed=row["last_run_processed"],
        updated_at=row["updated_at"],
    )


async def records_per_source(conn: Any) -> dict[str, int]:
    """Records in the tables per source, both kinds together (from the kept counts)."""
    records: dict[str, int] = {}
    for source, _, n in await conn.fetch(RECORDS_BY_SOURCE):
        records[source] = records.get(source, 0) + int(n)
    return records


def _by_source(rows: list[Any]) -> dict[str, KindCounts]:
    result: dict[str, KindCounts] = {}
    for source, kind, n in rows:
        counts = result.setdefault(source, KindCounts())
        setattr(counts, kind, getattr(counts, kind) + int(n))
        counts.total += int(n)
    return dict(sorted(result.items()))


@get(
    "/stats",
    summary="ETL statistics: checkpoints, recent runs, totals",
    description=openapi_text(__doc__),
    responses=error_responses(400, 503),
)
async def stats(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    limit: Annotated[
        str | None, params.integer("How many recent runs", 1, MAX_LIMIT, DEFAULT_LIMIT)
    ] = None,
) -> Response[Stats]:
    errors = ParamErrors()
    params.reject_unknown(request, ("limit",), errors)
    n = errors.integer("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT)
    errors.raise_if_any()
    async with db.connection() as conn:
        checkpoints = [_checkpoint(r) for r in await conn.fetch(_CHECKPOINTS)]
        recent = [run_item(r) for r in await conn.fetch(RECENT, n)]
        by_source = _by_source(list(await conn.fetch(RECORDS_BY_SOURCE)))
        runs, failed, processed, inserted, updated, rejected, drift = await conn.fetchrow(_TOTALS)
    summary = StatsSummary(
        records_total=sum(c.total for c in by_source.values()),
        records_by_source=by_source,
        runs_total=runs,
        runs_failed=failed,
        processed_total=processed,
        inserted_total=inserted,
        updated_total=updated,
        rejected_total=rejected,
        drift_events_total=drift,
        successful_sources=[c.source_type for c in checkpoints if c.status == "success"],
        failed_sources=[c.source_type for c in checkpoints if c.status == "failed"],
    )
    body = Stats(
        checkpoints=checkpoints,
        recent_runs=recent,
        summary=summary,
        metadata=meta_of(request),
    )
    return Response(body, media_type=JSON)
