"""The status of each source: one set of rules for ``/health``, the dashboard and ``/metrics``.

A source is judged on its runs *and* on the age of its data (:class:`SourceFacts`, read by
:func:`load` in one bounded statement, ``sql/status.sql``). Rules, for an enabled source:

* **failing**: its newest finished run failed;
* **degraded**, each with its reason:
  - it never ran, or never succeeded;
  - its newest finished run was interrupted (a worker stopped or died mid-run);
  - no run succeeded for more than ``STALE_AFTER_S``;
  - its next run is overdue by more than one interval (newest run's end + ``INTERVALS_S``;
    never while a run is going): no worker is running it;
  - its data is stale: the upstream timestamp of its newest observation is older than its
    ``FRESHNESS_S`` threshold (see :meth:`Settings.freshness_for`; CSV is exempt by default),
    or it has succeeded but holds no data at all. Runs that succeed on a frozen upstream (the
    same snapshot again, a feed that stopped) are caught here;
* **healthy** otherwise; **disabled** when not in ``ENABLED_SOURCES`` (never judged).

Timestamps later than now + :data:`MAX_CLOCK_SKEW` are ignored when looking for the newest
observation, so a future-dated entry cannot make a source look fresh forever. Anomaly flags
(:mod:`cryptoetl.api.anomalies`) never change a status: they mark runs, not sources.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptoetl.api.durations import fmt_duration
from cryptoetl.api.queries import load as load_queries
from cryptoetl.config import SOURCE_TYPES, Settings

Health = Literal["healthy", "degraded", "failing", "disabled"]
HEALTH_STATES: tuple[Health, ...] = ("healthy", "degraded", "failing", "disabled")
MAX_CLOCK_SKEW = timedelta(minutes=5)

SOURCE_FACTS = load_queries("status")["source_facts"]


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What is known of one source, as ``sql/status.sql`` reads it (``None``: nothing yet)."""

    source: str
    checkpoint_status: str | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    latest_id: str | None = None
    latest_status: str | None = None  # the newest run, whatever its status
    latest_started_at: datetime | None = None
    latest_finished_at: datetime | None = None
    finished_status: str | None = None  # the newest run that is no longer running
    finished_started_at: datetime | None = None
    finished_finished_at: datetime | None = None
    newest_data_at: datetime | None = None  # the upstream timestamp of the newest observation


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings a source is judged by."""

    enabled: bool
    interval_s: int
    stale_after_s: int
    freshness_s: int | None  # None: the source's data is never stale

    @classmethod
    def of(cls, settings: Settings, source: str) -> Policy:
        return cls(
            enabled=source in settings.enabled_sources,
            interval_s=settings.interval_for(source),
            stale_after_s=settings.stale_after_s,
            freshness_s=settings.freshness_for(source),
        )


@dataclass(frozen=True, slots=True)
class SourceStatus:
    facts: SourceFacts
    policy: Policy
    health: Health
    reasons: tuple[str, ...]
    next_run_at: datetime | None  # the newest run's end + the interval
    data_age_s: float | None  # now - newest_data_at (never negative)
    data_stale: bool
    runs_stale: bool  # no success for more than STALE_AFTER_S

    @property
    def source(self) -> str:
        return self.facts.source

    @property
    def last_duration_s(self) -> float | None:
        """How long the newest finished run took."""
        started, finished = self.facts.finished_started_at, self.facts.finished_finished_at
        return None if started is None or finished is None else (finished - started).total_seconds()

    @property
    def stale(self) -> bool:
        """Its data cannot be trusted to be current: too old, or no recent successful run."""
        return self.data_stale or self.runs_stale


def _age(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())


def _run_reasons(facts: SourceFacts, policy: Policy, now: datetime) -> list[str]:
    reasons = []
    if facts.finished_status == "failed":
        reasons.append("last run failed")
    elif facts.finished_status == "interrupted":
        reasons.append("last run interrupted")
    success_age = _age(facts.last_success_at, now)
    if success_age is None:
        reasons.append("no successful run yet")
    elif success_age > policy.stale_after_s:
        reasons.append(
            f"no successful run for {fmt_duration(success_age)} "
            f"(STALE_AFTER_S {fmt_duration(policy.stale_after_s)})"
        )
    return reasons


def _next_run_at(facts: SourceFacts, policy: Policy) -> datetime | None:
    if facts.latest_finished_at is None:
        return None
    return facts.latest_finished_at + timedelta(seconds=policy.interval_s)


def _overdue(facts: SourceFacts, policy: Policy, now: datetime) -> list[str]:
    next_run = _next_run_at(facts, policy)
    if facts.latest_status == "running" or next_run is None:
        return []
    late = (now - next_run).total_seconds()
    return [f"next run overdue by {fmt_duration(late)}"] if late > policy.interval_s else []


def _data_reasons(facts: SourceFacts, policy: Policy, age: float | None) -> list[str]:
    if policy.freshness_s is None or facts.last_success_at is None:
        return []  # exempt, or already degraded for never having succeeded
    if age is None:
        return ["no data yet"]
    if age > policy.freshness_s:
        return [
            f"newest data is {fmt_duration(age)} old "
            f"(FRESHNESS_S {fmt_duration(policy.freshness_s)})"
        ]
    return []


def judge(facts: SourceFacts, policy: Policy, now: datetime) -> SourceStatus:
    """The status of one source and every reason for it (see the module docstring)."""
    age = _age(facts.newest_data_at, now)
    success_age = _age(facts.last_success_at, now)
    runs_stale = success_age is None or success_age > policy.stale_after_s
    data_reasons = _data_reasons(facts, policy, age)
    health: Health
    if not policy.enabled:
        health, reasons = "disabled", ["not in ENABLED_SOURCES"]
    elif facts.latest_status is None:
        health, reasons = "degraded", ["never ran"]
    else:
        reasons = [
            *_run_reasons(facts, policy, now),
            *_overdue(facts, policy, now),
            *data_reasons,
        ]
        failing = facts.finished_status == "failed"
        health = "failing" if failing else "degraded" if reasons else "healthy"
    return SourceStatus(
        facts=facts,
        policy=policy,
        health=health,
        reasons=tuple(reasons),
        next_run_at=_next_run_at(facts, policy),
        data_age_s=age,
        data_stale=bool(data_reasons),
        runs_stale=runs_stale,
    )


def overall(statuses: Iterable[SourceStatus]) -> Health:
    """The worst status of the enabled sources (``healthy`` when none is enabled)."""
    found = {s.health for s in statuses}
    if "failing" in found:
        return "failing"
    return "degraded" if "degraded" in found else "healthy"


def facts_of(row: Any) -> SourceFacts:
    """A row of ``source_facts`` as :class:`SourceFacts`."""
    values = dict(row)
    latest_id = values.pop("latest_id")
    return SourceFacts(
        source=values.pop("source_type"),
        latest_id=None if latest_id is None else str(latest_id),
        **values,
    )


async def load(
    conn: Any, settings: Settings, now: datetime, sources: Sequence[str] = SOURCE_TYPES
) -> list[SourceStatus]:
    """Every source of ``sources`` judged now, in that order (one statement)."""
    rows = await conn.fetch(SOURCE_FACTS, list(sources), now + MAX_CLOCK_SKEW)
    return [judge(facts_of(row), Policy.of(settings, row["source_type"]), now) for row in rows]
