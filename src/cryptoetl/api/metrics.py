"""``GET /metrics``: Prometheus text, API requests and the pipeline, valid for prometheus-client's
parser.

* **Requests** (:mod:`cryptoetl.api.request_metrics`): ``cryptoetl_http_requests_total``,
  ``cryptoetl_http_request_duration_seconds`` (histogram) and
  ``cryptoetl_http_requests_in_flight``, summed over every Granian worker of the server.
* **Pipeline**, read from PostgreSQL at scrape time (the bookkeeping tables, never the
  observations), so every API process and replica reports the same. Per ``source``:

  - ``cryptoetl_source_status{status}``: 1 for the source's status by the rules of
    :mod:`cryptoetl.api.status` (``/health``'s and the dashboard's), 0 for the others;
  - ``cryptoetl_source_run_in_progress``: 1 while a run is going;
  - ``cryptoetl_source_last_success_age_seconds``, ``cryptoetl_source_newest_data_age_seconds``
    (the upstream timestamp of its newest observation) and
    ``cryptoetl_source_freshness_threshold_seconds`` (absent: never stale);
  - ``cryptoetl_source_last_run_duration_seconds``: the newest finished run;
  - ``cryptoetl_source_runs_last_24h{status}``, ``cryptoetl_source_rows_last_24h{outcome}``
    (processed, inserted, updated, unchanged, rejected) and
    ``cryptoetl_source_drift_events_last_24h``: runs started in the last 24 hours. A window,
    not counters since the beginning: those would sum every run ever at each scrape;
  - ``cryptoetl_pipeline_up``: 1 when the database answered (else only request metrics).

  A value that does not exist yet (never succeeded, no data) is left out, not faked as 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cryptoetl.api import params, status
from cryptoetl.api.deps import HEALTH_TIMEOUT_S, Database
from cryptoetl.api.docs import openapi_text
from cryptoetl.api.errors import ApiError, error_responses
from cryptoetl.api.params import ParamErrors
from cryptoetl.api.queries import load
from cryptoetl.api.request_metrics import RequestMetrics
from cryptoetl.config import SOURCE_TYPES, Settings

log = logging.getLogger("cryptoetl.api")

# Litestar adds "; charset=utf-8" to text types.
CONTENT_TYPE = "text/plain; version=0.0.4"
WINDOW = timedelta(hours=24)
RUN_STATUSES = ("success", "failed", "interrupted", "running")
ROW_OUTCOMES = ("processed", "inserted", "updated", "unchanged", "rejected")
RUNS_SINCE = load("metrics")["runs_since"]


class _Families(Collector):
    """A collector of families computed beforehand (the database is read asynchronously)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _gauge(name: str, doc: str, labels: Sequence[str] = ("source",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"cryptoetl_{name}", doc, labels=list(labels))


def status_families(statuses: Sequence[status.SourceStatus], now: datetime) -> list[Metric]:
    state = _gauge(
        "source_status", "1 for the source's status, 0 for the others.", ("source", "status")
    )
    running = _gauge("source_run_in_progress", "1 while a run of the source is going.")
    success = _gauge("source_last_success_age_seconds", "Seconds since the last successful run.")
    data = _gauge(
        "source_newest_data_age_seconds",
        "Age of the newest observation, by the upstream's own timestamp.",
    )
    threshold = _gauge(
        "source_freshness_threshold_seconds", "Data older than this is stale (FRESHNESS_S)."
    )
    duration = _gauge("source_last_run_duration_seconds", "Duration of the newest finished run.")
    for judged in statuses:
        source, facts = judged.source, judged.facts
        for health in status.HEALTH_STATES:
            state.add_metric([source, health], 1.0 if judged.health == health else 0.0)
        running.add_metric([source], 1.0 if facts.latest_status == "running" else 0.0)
        if facts.last_success_at is not None:
            success.add_metric([source], max(0.0, (now - facts.last_success_at).total_seconds()))
        if judged.data_age_s is not None:
            data.add_metric([source], judged.data_age_s)
        if judged.policy.freshness_s is not None:
            threshold.add_metric([source], float(judged.policy.freshness_s))
        if judged.last_duration_s is not None:
            duration.add_metric([source], judged.last_duration_s)
    return [state, running, success, data, threshold, duration]


def window_families(rows: Sequence[Any], sources: Sequence[str]) -> list[Metric]:
    runs = _gauge(
        "source_runs_last_24h", "Runs started in the last 24 h, by status.", ("source", "status")
    )
    rows_family = _gauge(
        "source_rows_last_24h",
        "Rows of the runs started in the last 24 h, by outcome.",
        ("source", "outcome"),
    )
    drift = _gauge("source_drift_events_last_24h", "Schema drift events of those runs.")
    found = {(r["source_type"], r["status"]): r for r in rows}
    for source in sources:
        of_source = [r for (s, _), r in found.items() if s == source]
        for run_status in RUN_STATUSES:
            row = found.get((source, run_status))
            runs.add_metric([source, run_status], float(row["runs"]) if row else 0.0)
        for outcome in ROW_OUTCOMES:
            rows_family.add_metric([source, outcome], float(sum(r[outcome] for r in of_source)))
        drift.add_metric([source], float(sum(r["drift_events"] for r in of_source)))
    return [runs, rows_family, drift]


async def pipeline_families(db: Database, settings: Settings, now: datetime) -> list[Metric]:
    """The pipeline's families; only ``cryptoetl_pipeline_up 0`` when the database fails."""
    up = _gauge("pipeline_up", "1 when the database answered this scrape.", ())
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S), db.connection(HEALTH_TIMEOUT_S) as conn:
            statuses = await status.load(conn, settings, now)
            window = await conn.fetch(RUNS_SINCE, list(SOURCE_TYPES), now - WINDOW)
    except (ApiError, TimeoutError) as exc:
        log.warning(
            "pipeline metrics unavailable",
            extra={"event": "metrics_database_error", "error": type(exc).__name__},
        )
        up.add_metric([], 0.0)
        return [up]
    except Exception:
        # Anything else (a schema not migrated yet, a revoked grant) must not take the request
        # metrics down with it: /metrics is also the API's liveness probe.
        log.exception("pipeline metrics failed", extra={"event": "metrics_error"})
        up.add_metric([], 0.0)
        return [up]
    up.add_metric([], 1.0)
    return [up, *status_families(statuses, now), *window_families(window, SOURCE_TYPES)]


@get(
    "/metrics",
    summary="Prometheus metrics: API requests (every worker) and the pipeline per source",
    description=openapi_text(__doc__),
    media_type=CONTENT_TYPE,
    responses=error_responses(400),
)
async def metrics(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
    registry: NamedDependency[RequestMetrics],
) -> Response[bytes]:
    errors = ParamErrors()
    params.reject_unknown(request, (), errors)
    errors.raise_if_any()
    pipeline = CollectorRegistry()
    pipeline.register(_Families(await pipeline_families(db, settings, datetime.now(UTC))))
    body = registry.render() + generate_latest(pipeline)
    return Response(body, media_type=CONTENT_TYPE)
