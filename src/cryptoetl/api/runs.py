"""``GET /runs`` (recent ETL runs) and ``GET /compare-runs`` (two runs side by side).

``/compare-runs?source=S`` compares the latest two *finished* runs of S (a run still going has
partial counts); ``?run_a=UUID&run_b=UUID`` compares any two (``run_a`` is the reference).
``run_b`` is judged by the anomaly rules of :mod:`cryptoetl.api.anomalies` (the dashboard uses
the same): each anomaly names its rule, and ``baseline`` says what ``run_b`` was compared with
and which rules did not apply to it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from cryptoetl.api import params
from cryptoetl.api.anomalies import HISTORY_RUNS, judge
from cryptoetl.api.deps import Database
from cryptoetl.api.docs import openapi_text
from cryptoetl.api.errors import JSON, NotFound
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.queries import load
from cryptoetl.api.request_context import meta_of
from cryptoetl.api.schemas import (
    Difference,
    ErrorBody,
    Meta,
    RunComparison,
    RunItem,
    RunList,
)
from cryptoetl.config import SOURCE_TYPES

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
COMPARED_FIELDS = (
    "processed",
    "inserted",
    "updated",
    "unchanged",
    "rejected",
    "drift_events",
    "raw_stored",
)

_SQL = load("runs")
RECENT = _SQL["recent"]
RECENT_OF_SOURCE = _SQL["recent_of_source"]
SUCCESSES_BEFORE = _SQL["successes_before"]
_LATEST_TWO = _SQL["latest_two_finished"]
_BY_ID = _SQL["by_id"]

_ERRORS = {
    400: ResponseSpec(ErrorBody, description="Invalid parameters", generate_examples=False),
    503: ResponseSpec(ErrorBody, description="Database unavailable", generate_examples=False),
}


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


def _meta(request: Request[Any, Any, Any]) -> Meta:
    return meta_of(request)


@get(
    "/runs",
    summary="Recent ETL runs, newest first",
    responses=_ERRORS,
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
    body = RunList(data=[run_item(r) for r in rows], metadata=_meta(request))
    return Response(body, media_type=JSON)


# --- comparison -------------------------------------------------------------------------------


def differences(a: RunItem, b: RunItem) -> dict[str, Difference]:
    result = {}
    for name in (*COMPARED_FIELDS, "duration_s"):
        va, vb = getattr(a, name), getattr(b, name)
        delta = None if va is None or vb is None else vb - va
        pct = None if delta is None or not va else round(delta / va * 100, 3)
        result[name] = Difference(a=va, b=vb, delta=delta, pct_change=pct)
    return result


async def _pair(conn: Any, source: str | None, run_a: str | None, run_b: str | None) -> Any:
    if source is not None:
        rows = await conn.fetch(_LATEST_TWO, source)
        if len(rows) < 2:
            raise NotFound(f"source {source!r} has fewer than two finished runs")
        return rows[1], rows[0]
    pair = []
    for name, run_id in (("run_a", run_a), ("run_b", run_b)):
        row = await conn.fetchrow(_BY_ID, run_id)
        if row is None:
            raise NotFound(f"{name} {run_id} not found")
        pair.append(row)
    return pair[0], pair[1]


def _parse_compare(
    request: Request[Any, Any, Any], source: str | None, run_a: str | None, run_b: str | None
) -> tuple[Any, ...]:
    errors = ParamErrors()
    params.reject_unknown(request, ("source", "run_a", "run_b"), errors)
    source_type = errors.choice("source", source, SOURCE_TYPES)
    ids: dict[str, str | None] = {"run_a": None, "run_b": None}
    for name, raw in (("run_a", run_a), ("run_b", run_b)):
        if raw:
            try:
                ids[name] = str(uuid.UUID(raw))
            except ValueError:
                errors.add(name, "must be a run id (UUID)")
    given_ids = bool(run_a) + bool(run_b)
    if source and given_ids:
        errors.add("source", "give either source, or run_a and run_b, not both")
    elif given_ids == 1:
        errors.add("run_b" if run_a else "run_a", "run_a and run_b go together")
    elif not source and not given_ids:
        errors.add("source", "give source, or run_a and run_b")
    errors.raise_if_any()
    return source_type, ids["run_a"], ids["run_b"]


@get(
    "/compare-runs",
    summary="Compare two ETL runs and flag anomalies",
    description=openapi_text(__doc__),
    responses={**_ERRORS, 404: ResponseSpec(ErrorBody, description="Run(s) not found")},
)
async def compare_runs(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    source: Annotated[
        str | None,
        params.choice("Compare the latest two finished runs of this source", SOURCE_TYPES),
    ] = None,
    run_a: Annotated[str | None, params.run_id("Reference run id")] = None,
    run_b: Annotated[
        str | None, params.run_id("Run id judged against the reference and its source's history")
    ] = None,
) -> Response[RunComparison]:
    source_type, id_a, id_b = _parse_compare(request, source, run_a, run_b)
    async with db.connection() as conn:
        row_a, row_b = await _pair(conn, source_type, id_a, id_b)
        history = await conn.fetch(
            SUCCESSES_BEFORE, row_b["source_type"], row_b["started_at"], HISTORY_RUNS
        )
    a, b = run_item(row_a), run_item(row_b)
    judged = judge(a, b, [run_item(r) for r in history])
    body = RunComparison(
        run_a=a,
        run_b=b,
        differences=differences(a, b),
        anomalies=judged.anomalies,
        baseline=judged.baseline,
        metadata=_meta(request),
    )
    return Response(body, media_type=JSON)
