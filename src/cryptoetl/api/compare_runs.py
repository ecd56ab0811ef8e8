"""``GET /compare-runs``: two ETL runs side by side, the second judged for anomalies.

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

from cryptoetl.api import params
from cryptoetl.api.anomalies import HISTORY_RUNS, judge
from cryptoetl.api.deps import Database
from cryptoetl.api.docs import openapi_text
from cryptoetl.api.errors import JSON, NotFound, error_responses
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.queries import load
from cryptoetl.api.request_context import meta_of
from cryptoetl.api.runs import SUCCESSES_BEFORE, run_item
from cryptoetl.api.schemas import Difference, RunComparison, RunItem
from cryptoetl.config import SOURCE_TYPES

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
_LATEST_TWO = _SQL["latest_two_finished"]
_BY_ID = _SQL["by_id"]


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
    responses=error_responses(400, 404, 503, not_found="Run(s) not found"),
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
        metadata=meta_of(request),
    )
    return Response(body, media_type=JSON)
