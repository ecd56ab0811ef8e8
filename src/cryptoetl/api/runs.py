"""``GET /runs``: recent ETL runs, newest first, with their counts.

:func:`run_item` is the one shape of a run row, shared by ``/stats``, ``/compare-runs`` and the
dashboard; the statements are the ``runs`` block of ``sql/runs.sql``.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from cryptoetl.api import params
from cryptoetl.api.deps import Database
from cryptoetl.api.errors import JSON, error_responses
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.queries import load
from cryptoetl.api.request_context import meta_of
from cryptoetl.api.schemas import RunItem, RunList
from cryptoetl.config import SOURCE_TYPES

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

_SQL = load("runs")
RECENT = _SQL["recent"]
RECENT_OF_SOURCE = _SQL["recent_of_source"]
SUCCESSES_BEFORE = _SQL["successes_before"]


def run_item(row: Any) -> RunItem:
    return RunItem(
        id=str(row["id"]),
        source_type=row["source_type"],
        status=row["status"],
        worker_id=row["worker_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_s=row["duration_s"],
        processed=row["processed"],
        inserted=row["inserted"],
        updated=row["updated"],
        unchanged=row["unchanged"],
        rejected=row["rejected"],
        drift_events=row["drift_events"],
        raw_stored=row["raw_stored"],
        warnings=list(row["warnings"]),
        error=row["error"],
    )


@get(
    "/runs",
    summary="Recent ETL runs, newest first",
    responses=error_responses(400, 503),
)
async def list_runs(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    limit: Annotated[
        str | None, params.integer("How many runs", 1, MAX_LIMIT, DEFAULT_LIMIT)
    ] = None,
    source: Annotated[str | None, params.choice("Only runs of this source", SOURCE_TYPES)] = None,
) -> Response[RunList]:
    errors = ParamErrors()
    params.reject_unknown(request, ("limit", "source"), errors)
    n = errors.integer("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT)
    source_type = errors.choice("source", source, SOURCE_TYPES)
    errors.raise_if_any()
    async with db.connection() as conn:
        if source_type is None:
            rows = await conn.fetch(RECENT, n)
        else:
            rows = await conn.fetch(RECENT_OF_SOURCE, source_type, n)
    body = RunList(data=[run_item(r) for r in rows], metadata=meta_of(request))
    return Response(body, media_type=JSON)
