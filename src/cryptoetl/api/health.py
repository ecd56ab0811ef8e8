"""``GET /health``: can we reach the database, and is every enabled source delivering current data?

* ``healthy`` (200): database reachable, every enabled source healthy;
* ``degraded`` (200): reachable, but no run was ever recorded, or an enabled source is failing
  or degraded by the rules of :mod:`cryptoetl.api.status` (the dashboard's and ``/metrics``'
  rules too): its last run failed or was interrupted, it never succeeded, no run succeeded for
  ``STALE_AFTER_S``, its next run is overdue, or the upstream timestamp of its newest
  observation is older than its ``FRESHNESS_S`` threshold although its runs succeed (a frozen
  upstream). ``reasons`` lists each finding, prefixed with the source;
* ``unhealthy`` (503): the database cannot be reached within :data:`HEALTH_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from cryptoetl.api import params, status
from cryptoetl.api.deps import HEALTH_TIMEOUT_S, Database
from cryptoetl.api.docs import openapi_text
from cryptoetl.api.errors import JSON, DatabaseUnavailable, error_responses
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.queries import load
from cryptoetl.api.request_context import meta_of
from cryptoetl.api.schemas import Health, Liveness, Meta, RunSummary, SourceHealth
from cryptoetl.api.stats import records_per_source
from cryptoetl.config import Settings

NEWEST_RUN = load("status")["newest_run"]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    statuses: list[status.SourceStatus]
    records: dict[str, int]
    newest_run: Any


async def _snapshot(db: Database, settings: Settings, now: datetime) -> _Snapshot:
    # One bound for connecting and querying: /health must answer while the database hangs.
    async with asyncio.timeout(HEALTH_TIMEOUT_S), db.connection(HEALTH_TIMEOUT_S) as conn:
        statuses = await status.load(conn, settings, now)
        records = await records_per_source(conn)
        return _Snapshot(statuses, records, await conn.fetchrow(NEWEST_RUN))


def _shown(judged: status.SourceStatus) -> bool:
    """Enabled sources, and disabled ones that have run (their history is still there)."""
    return judged.policy.enabled or judged.facts.checkpoint_status is not None


def source_health(judged: status.SourceStatus, records: int) -> SourceHealth:
    facts = judged.facts
    return SourceHealth(
        status=facts.checkpoint_status or "never_run",
        health=judged.health,
        reasons=list(judged.reasons),
        last_success_at=facts.last_success_at,
        last_failure_at=facts.last_failure_at,
        last_error=facts.last_error,
        records=records,
        interval_s=judged.policy.interval_s,
        next_run_at=judged.next_run_at,
        newest_data_at=facts.newest_data_at,
        data_age_s=judged.data_age_s,
        freshness_s=judged.policy.freshness_s,
        stale=judged.stale,
    )


def _reasons(snap: _Snapshot) -> list[str]:
    reasons = [] if snap.newest_run is not None else ["no ETL run recorded yet"]
    for judged in snap.statuses:
        if judged.policy.enabled:
            reasons += [f"{judged.source}: {reason}" for reason in judged.reasons]
    return reasons


def _run_summary(row: Any) -> RunSummary | None:
    if row is None:
        return None
    return RunSummary(
        id=str(row["id"]),
        source_type=row["source_type"],
        status=row["status"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _unreachable(now: datetime, meta: Meta) -> Response[Health]:
    body = Health(
        status="unhealthy",
        database_connected=False,
        etl_last_run=None,
        etl_status=None,
        sources={},
        newest_record_at=None,
        reasons=["database unreachable"],
        timestamp=now,
        metadata=meta,
    )
    return Response(body, status_code=503, media_type=JSON)


@get(
    "/health/live",
    summary="Liveness: this API process answers (no database access)",
    description=(
        "For a liveness or start-up probe: 200 while the process serves requests, whatever the "
        "database's state, so an outage never gets healthy API pods restarted. Readiness and "
        "monitoring use `/health`."
    ),
    responses=error_responses(400),
)
async def live(request: Request[Any, Any, Any]) -> Response[Liveness]:
    errors = ParamErrors()
    params.reject_unknown(request, (), errors)
    errors.raise_if_any()
    return Response(Liveness(status="alive", metadata=meta_of(request)), media_type=JSON)


@get(
    "/health",
    summary="Service and ETL health",
    description=openapi_text(__doc__),
    responses={
        **error_responses(400),
        503: ResponseSpec(Health, description="Database unreachable"),
    },
)
async def health(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
) -> Response[Health]:
    errors = ParamErrors()
    params.reject_unknown(request, (), errors)
    errors.raise_if_any()
    now = datetime.now(UTC)
    try:
        snap = await _snapshot(db, settings, now)
    except (DatabaseUnavailable, TimeoutError):
        return _unreachable(now, meta_of(request))
    reasons = _reasons(snap)
    last_run = _run_summary(snap.newest_run)
    newest = [s.facts.newest_data_at for s in snap.statuses if s.facts.newest_data_at]
    meta = meta_of(request)
    body = Health(
        status="degraded" if reasons else "healthy",
        database_connected=True,
        etl_last_run=last_run,
        etl_status=last_run.status if last_run else "never_run",
        sources={
            s.source: source_health(s, snap.records.get(s.source, 0))
            for s in snap.statuses
            if _shown(s)
        },
        newest_record_at=max(newest, default=None),
        reasons=reasons,
        timestamp=now,
        metadata=meta,
    )
    return Response(body, media_type=JSON)
