"""``/runs``, ``/compare-runs`` and ``/stats``: ETL runs, their comparison and the totals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from cryptoetl.api.schemas.common import Meta


class RunItem(msgspec.Struct, kw_only=True):
    id: str
    source_type: str
    status: str
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    processed: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    drift_events: int
    raw_stored: int
    warnings: list[str]
    error: str | None


class RunList(msgspec.Struct, kw_only=True):
    data: list[RunItem]
    metadata: Meta


class Difference(msgspec.Struct, kw_only=True):
    a: float | None
    b: float | None
    delta: float | None
    pct_change: float | None


class Anomaly(msgspec.Struct, kw_only=True):
    rule: str
    field: str
    message: str
    value: float | None = None
    expected_low: float | None = None
    expected_high: float | None = None


class Baseline(msgspec.Struct, kw_only=True):
    """History ``run_b`` is judged against (see :mod:`cryptoetl.api.anomalies`): the productive
    successful runs of its source for ``processed``, the successful runs of its own kind (no-op
    or productive) for the duration."""

    runs: int
    mean_processed: float | None
    stddev_processed: float | None
    median_duration_s: float | None
    duration_runs: int
    run_b_no_op: bool  # run_b inserted and updated nothing
    skipped: list[str]  # rules not applied to run_b, and why


class RunComparison(msgspec.Struct, kw_only=True):
    run_a: RunItem
    run_b: RunItem
    differences: dict[str, Difference]
    anomalies: list[Anomaly]
    baseline: Baseline
    metadata: Meta


class CheckpointItem(msgspec.Struct, kw_only=True):
    source_type: str
    status: str
    cursor: dict[str, Any]
    last_run_id: str | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    records_total: int
    last_run_processed: int
    updated_at: datetime


class KindCounts(msgspec.Struct, kw_only=True):
    market: int = 0
    news: int = 0
    total: int = 0


class StatsSummary(msgspec.Struct, kw_only=True):
    records_total: int
    records_by_source: dict[str, KindCounts]
    runs_total: int
    runs_failed: int
    processed_total: int
    inserted_total: int
    updated_total: int
    rejected_total: int
    drift_events_total: int
    successful_sources: list[str]
    failed_sources: list[str]


class Stats(msgspec.Struct, kw_only=True):
    checkpoints: list[CheckpointItem]
    recent_runs: list[RunItem]
    summary: StatsSummary
    metadata: Meta
