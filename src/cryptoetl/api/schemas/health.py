"""``/health``: the service, the database and each enabled source; ``/health/live``: the process."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from cryptoetl.api.schemas.common import Meta


class RunSummary(msgspec.Struct, kw_only=True):
    id: str
    source_type: str
    status: str
    started_at: datetime
    finished_at: datetime | None


class SourceHealth(msgspec.Struct, kw_only=True):
    """One source as :mod:`cryptoetl.api.status` judges it (the dashboard shows the same)."""

    # The checkpoint's status: never_run | running | success | failed | interrupted.
    status: str
    health: Literal["healthy", "degraded", "failing", "disabled"]
    reasons: list[str]
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    records: int
    interval_s: int
    next_run_at: datetime | None
    # The upstream timestamp of the newest observation, its age, and the age past which the
    # data is stale (null: never stale, as CSV history by default).
    newest_data_at: datetime | None
    data_age_s: float | None
    freshness_s: int | None
    # Data too old, or no successful run for more than STALE_AFTER_S.
    stale: bool


class Health(msgspec.Struct, kw_only=True):
    status: Literal["healthy", "degraded", "unhealthy"]
    database_connected: bool
    etl_last_run: RunSummary | None
    etl_status: str | None
    sources: dict[str, SourceHealth]
    newest_record_at: datetime | None
    reasons: list[str]
    timestamp: datetime
    metadata: Meta


class Liveness(msgspec.Struct, kw_only=True):
    """``/health/live``: the process answers; says nothing of the database or the sources."""

    status: Literal["alive"]
    metadata: Meta
