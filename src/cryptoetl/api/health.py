"""``GET /health``: can we reach the database, and is the ETL delivering?

* ``healthy`` (200): database reachable, every enabled source's last run succeeded less than
  ``STALE_AFTER_S`` seconds ago.
* ``degraded`` (200): reachable, but no run was ever recorded, or an enabled source's last run
  failed, never ran, or last succeeded more than ``STALE_AFTER_S`` ago (its data is stale).
  ``reasons`` lists each finding.
* ``unhealthy`` (503): the database cannot be reached within :data:`HEALTH_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from cryptoetl.api.deps import HEALTH_TIMEOUT_S, Database
from cryptoetl.api.errors import JSON, DatabaseUnavailable, latency_ms, request_id_of
from cryptoetl.api.queries import NEWEST_RECORD, RECORDS_BY_SOURCE
from cryptoetl.api.schemas import Health, Meta, RunSummary, SourceHealth
from cryptoetl.config import Settings

_CHECKPOINTS = (
    "SELECT source_type, status, last_success_at, last_failure_at, last_error FROM checkpoints"
)
_LAST_RUN = (
    "SELECT id, source_type, status, started_at, finished_at FROM runs "
    "ORDER BY started_at DESC LIMIT 1"
)

_encoder = msgspec.json.Encoder()


class _Snapshot(msgspec.Struct):
    checkpoints: list[Any]
    records: dict[str, int]
    last_run: Any
    newest: datetime | None


async def _snapshot(db: Database) -> _Snapshot:
    # One bound for connecting and querying: /health must answer while the database hangs.
    async with asyncio.timeout(HEALTH_TIMEOUT_S), db.connection(HEALTH_TIMEOUT_S) as conn:
        return _Snapshot(
            checkpoints=list(await conn.fetch(_CHECKPOINTS)),
            records={str(r[0]): int(r[2]) for r in await conn.fetch(RECORDS_BY_SOURCE)},
            last_run=await conn.fetchrow(_LAST_RUN),
            newest=await conn.fetchval(NEWEST_RECORD),
        )


def _sources(settings: Settings, snap: _Snapshot, now: datetime) -> dict[str, SourceHealth]:
    stale_before = now - timedelta(seconds=settings.stale_after_s)
    rows = {row["source_type"]: row for row in snap.checkpoints}
    sources = {}
    for name in dict.fromkeys([*settings.enabled_sources, *sorted(rows)]):
        row = rows.get(name)
        last_success = row["last_success_at"] if row else None
        sources[name] = SourceHealth(
            status=row["status"] if row else "never_run",
            last_success_at=last_success,
            last_failure_at=row["last_failure_at"] if row else None,
            last_error=row["last_error"] if row else None,
            records=snap.records.get(name, 0),
            interval_s=settings.interval_for(name),
            stale=last_success is None or last_success < stale_before,
        )
    return sources


def _reasons(settings: Settings, snap: _Snapshot, sources: dict[str, SourceHealth]) -> list[str]:
    reasons = [] if snap.last_run is not None else ["no ETL run recorded yet"]
    for name in settings.enabled_sources:
        source = sources[name]
        if source.status == "failed":
            reasons.append(f"{name}: last run failed")
        if source.last_success_at is None:
            reasons.append(f"{name}: no successful run yet")
        elif source.stale:
            reasons.append(f"{name}: no new data for more than {settings.stale_after_s}s")
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


@get(
    "/health",
    summary="Service and ETL health",
    description=__doc__,
    responses={503: ResponseSpec(Health, description="Database unreachable")},
)
async def health(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
) -> Response[Health]:
    now = datetime.now(UTC)
    meta = Meta(request_id=request_id_of(request), api_latency_ms=0.0)
    try:
        snap = await _snapshot(db)
    except (DatabaseUnavailable, TimeoutError):
        meta.api_latency_ms = latency_ms(request)
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
    sources = _sources(settings, snap, now)
    reasons = _reasons(settings, snap, sources)
    last_run = _run_summary(snap.last_run)
    meta.api_latency_ms = latency_ms(request)
    body = Health(
        status="degraded" if reasons else "healthy",
        database_connected=True,
        etl_last_run=last_run,
        etl_status=last_run.status if last_run else "never_run",
        sources=sources,
        newest_record_at=snap.newest,
        reasons=reasons,
        timestamp=now,
        metadata=meta,
    )
    return Response(body, media_type=JSON)
