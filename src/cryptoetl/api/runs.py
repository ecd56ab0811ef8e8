"""``GET /runs`` (recent ETL runs) and ``GET /compare-runs`` (two runs side by side).

``/compare-runs?source=S`` compares the latest two *finished* runs of S (a run still going has
partial counts); ``?run_a=UUID&run_b=UUID`` compares any two (``run_a`` is the reference).

Anomaly rules, each reported with the rule that raised it; ``run_b`` is judged against the
baseline = the last :data:`BASELINE_RUNS` successful runs of its source that started before it:

* ``processed_outside_3_sigma``: with >= :data:`MIN_RUNS_FOR_SIGMA` baseline runs, ``processed``
  outside mean ± 3 standard deviations;
* ``processed_outside_50_pct``: with fewer (but some) baseline runs, outside mean ± 50%;
* ``success_to_failure``: ``run_a`` succeeded and ``run_b`` failed;
* ``duration_over_3x_median``: ``run_b`` took more than 3x the baseline's median duration;
* ``rejected_share_over_10_pct``: more than 10% of the records ``run_b`` looked at were rejected;
* ``schema_drift``: ``run_b`` recorded schema drift events.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from cryptoetl.api.deps import Database
from cryptoetl.api.errors import JSON, NotFound, ParamErrors, latency_ms, request_id_of
from cryptoetl.api.schemas import (
    Anomaly,
    Baseline,
    Difference,
    ErrorBody,
    Meta,
    RunComparison,
    RunItem,
    RunList,
)
from cryptoetl.config import SOURCE_TYPES

BASELINE_RUNS = 20
MIN_RUNS_FOR_SIGMA = 5
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

RUN_COLUMNS = (
    "id, source_type, status, worker_id, started_at, finished_at, "
    "extract(epoch FROM finished_at - started_at)::float8 AS duration_s, processed, inserted, "
    "updated, unchanged, rejected, drift_events, raw_stored, warnings, error"
)
_RECENT = f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id LIMIT $1::int"
_RECENT_OF = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE source_type = $2::text "
    "ORDER BY started_at DESC, id LIMIT $1::int"
)
_LATEST_TWO = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE source_type = $1::text AND status <> 'running' "
    "ORDER BY started_at DESC, id LIMIT 2"
)
_BY_ID = f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1::uuid"
_BASELINE = (
    "SELECT processed, extract(epoch FROM finished_at - started_at)::float8 FROM runs "
    "WHERE source_type = $1::text AND status = 'success' AND started_at < $2::timestamptz "
    "ORDER BY started_at DESC LIMIT $3::int"
)

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
    return Meta(request_id=request_id_of(request), api_latency_ms=latency_ms(request))


@get(
    "/runs",
    summary="Recent ETL runs, newest first",
    responses=_ERRORS,
)
async def list_runs(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    limit: Annotated[
        str | None,
        Parameter(
            description=f"How many runs (1-{MAX_LIMIT})",
            schema_extra={"type": "integer", "one_of": None, "minimum": 1, "maximum": MAX_LIMIT},
        ),
    ] = None,
    source: Annotated[
        str | None,
        Parameter(
            description="Only runs of this source",
            schema_extra={"type": "string", "one_of": None, "enum": list(SOURCE_TYPES)},
        ),
    ] = None,
) -> Response[RunList]:
    errors = ParamErrors()
    n = errors.integer("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT)
    source_type = errors.choice("source", source, SOURCE_TYPES)
    errors.raise_if_any()
    async with db.connection() as conn:
        if source_type is None:
            rows = await conn.fetch(_RECENT, n)
        else:
            rows = await conn.fetch(_RECENT_OF, n, source_type)
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


def _processed_rule(b: RunItem, processed: Sequence[int]) -> Anomaly | None:
    if not processed:
        return None
    mean = statistics.fmean(processed)
    if len(processed) >= MIN_RUNS_FOR_SIGMA:
        rule, half_width = "processed_outside_3_sigma", 3 * statistics.stdev(processed)
        why = f"mean ± 3 sigma of the last {len(processed)} successful runs"
    else:
        rule, half_width = "processed_outside_50_pct", 0.5 * mean
        why = f"mean ± 50% of the last {len(processed)} successful run(s) (too few for 3 sigma)"
    low, high = mean - half_width, mean + half_width
    if low <= b.processed <= high:
        return None
    return Anomaly(
        rule=rule,
        field="processed",
        message=f"processed {b.processed} is outside [{low:.1f}, {high:.1f}], {why}",
        value=b.processed,
        expected_low=round(low, 3),
        expected_high=round(high, 3),
    )


def _duration_rule(b: RunItem, durations: Sequence[float]) -> Anomaly | None:
    if b.duration_s is None or not durations:
        return None
    median = statistics.median(durations)
    if median <= 0 or b.duration_s <= 3 * median:
        return None
    return Anomaly(
        rule="duration_over_3x_median",
        field="duration_s",
        message=f"took {b.duration_s:.3f}s, more than 3x the median {median:.3f}s",
        value=b.duration_s,
        expected_high=round(3 * median, 6),
    )


def anomalies(
    a: RunItem, b: RunItem, processed: Sequence[int], durations: Sequence[float]
) -> list[Anomaly]:
    found = [_processed_rule(b, processed), _duration_rule(b, durations)]
    if a.status == "success" and b.status == "failed":
        found.append(
            Anomaly(
                rule="success_to_failure",
                field="status",
                message=f"run_a succeeded, run_b failed: {b.error or 'no error recorded'}",
            )
        )
    if b.processed and b.rejected / b.processed > 0.10:
        found.append(
            Anomaly(
                rule="rejected_share_over_10_pct",
                field="rejected",
                message=f"{b.rejected} of {b.processed} records rejected",
                value=b.rejected,
                expected_high=round(0.10 * b.processed, 3),
            )
        )
    if b.drift_events:
        found.append(
            Anomaly(
                rule="schema_drift",
                field="drift_events",
                message=f"{b.drift_events} schema drift event(s) recorded",
                value=b.drift_events,
            )
        )
    return [x for x in found if x is not None]


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


def _parse_compare(source: str | None, run_a: str | None, run_b: str | None) -> tuple[Any, ...]:
    errors = ParamErrors()
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
    description=__doc__,
    responses={**_ERRORS, 404: ResponseSpec(ErrorBody, description="Run(s) not found")},
)
async def compare_runs(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    source: Annotated[
        str | None,
        Parameter(
            description="Compare the latest two finished runs of this source",
            schema_extra={"type": "string", "one_of": None, "enum": list(SOURCE_TYPES)},
        ),
    ] = None,
    run_a: Annotated[
        str | None,
        Parameter(
            description="Reference run id",
            schema_extra={"type": "string", "one_of": None, "format": "uuid"},
        ),
    ] = None,
    run_b: Annotated[
        str | None,
        Parameter(
            description="Run id judged against the reference and its source's history",
            schema_extra={"type": "string", "one_of": None, "format": "uuid"},
        ),
    ] = None,
) -> Response[RunComparison]:
    source_type, id_a, id_b = _parse_compare(source, run_a, run_b)
    async with db.connection() as conn:
        row_a, row_b = await _pair(conn, source_type, id_a, id_b)
        history = await conn.fetch(
            _BASELINE, row_b["source_type"], row_b["started_at"], BASELINE_RUNS
        )
    a, b = run_item(row_a), run_item(row_b)
    processed = [int(r[0]) for r in history]
    durations = [float(r[1]) for r in history if r[1] is not None]
    body = RunComparison(
        run_a=a,
        run_b=b,
        differences=differences(a, b),
        anomalies=anomalies(a, b, processed, durations),
        baseline=Baseline(
            runs=len(history),
            mean_processed=statistics.fmean(processed) if processed else None,
            stddev_processed=statistics.stdev(processed) if len(processed) > 1 else None,
            median_duration_s=statistics.median(durations) if durations else None,
        ),
        metadata=_meta(request),
    )
    return Response(body, media_type=JSON)
