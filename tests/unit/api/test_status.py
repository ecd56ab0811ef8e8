"""The one set of status rules (/health, the dashboard and /metrics): runs and data age."""

from __future__ import annotations

from datetime import timedelta

from cryptoetl.api.status import overall
from tests.unit.api.dashboard.helpers import NOW, facts, judged, policy


def _health(**overrides: object) -> tuple[str, list[str]]:
    policy_overrides = {k: overrides.pop(k) for k in list(overrides) if k in policy().__slots__}
    status = judged(facts(**overrides), policy(**policy_overrides))
    return status.health, list(status.reasons)


def test_run_rules() -> None:
    assert _health() == ("healthy", [])
    assert _health(enabled=False) == ("disabled", ["not in ENABLED_SOURCES"])
    assert _health(latest_status=None, finished_status=None) == ("degraded", ["never ran"])
    assert _health(finished_status="failed", latest_status="failed") == (
        "failing",
        ["last run failed"],
    )
    assert _health(finished_status="interrupted") == ("degraded", ["last run interrupted"])
    assert _health(last_success_at=None) == ("degraded", ["no successful run yet"])
    assert _health(last_success_at=NOW - timedelta(hours=2)) == (
        "degraded",
        ["no successful run for 2 h (STALE_AFTER_S 1 h)"],
    )


def test_overdue_rule() -> None:
    # Late by less than one interval: still healthy; by more: degraded.
    ended = NOW - timedelta(seconds=60 + 59)
    assert _health(latest_finished_at=ended)[0] == "healthy"
    assert _health(latest_finished_at=NOW - timedelta(seconds=60 + 61)) == (
        "degraded",
        ["next run overdue by 1 min 1 s"],
    )
    # A run in progress is never overdue.
    running = _health(latest_status="running", latest_finished_at=NOW - timedelta(hours=1))
    assert running[0] == "healthy"
    status = judged(facts(latest_finished_at=NOW - timedelta(seconds=30)), policy())
    assert status.next_run_at == NOW + timedelta(seconds=30)


def test_data_age_rule_catches_a_frozen_upstream() -> None:
    """Runs succeed every minute, but the newest observation is two years old."""
    frozen = _health(newest_data_at=NOW - timedelta(days=730))
    assert frozen == ("degraded", ["newest data is 730 d old (FRESHNESS_S 15 min)"])
    status = judged(facts(newest_data_at=NOW - timedelta(days=730)), policy())
    assert (status.data_stale, status.runs_stale, status.stale) == (True, False, True)
    assert status.data_age_s == 730 * 86_400
    # Within the threshold: fresh; exempt (CSV history by default): never stale.
    assert _health(newest_data_at=NOW - timedelta(minutes=14))[0] == "healthy"
    assert _health(newest_data_at=NOW - timedelta(days=730), freshness_s=None)[0] == "healthy"
    # Succeeded but holds nothing: said so; never succeeded: that reason alone.
    assert _health(newest_data_at=None) == ("degraded", ["no data yet"])
    never = _health(newest_data_at=None, last_success_at=None)
    assert never == ("degraded", ["no successful run yet"])


def test_a_failing_source_lists_every_reason() -> None:
    health, reasons = _health(
        finished_status="failed",
        last_success_at=NOW - timedelta(hours=3),
        newest_data_at=NOW - timedelta(hours=3),
    )
    assert health == "failing"
    assert reasons == [
        "last run failed",
        "no successful run for 3 h (STALE_AFTER_S 1 h)",
        "newest data is 3 h old (FRESHNESS_S 15 min)",
    ]


def test_data_in_the_future_counts_as_now() -> None:
    status = judged(facts(newest_data_at=NOW + timedelta(minutes=2)), policy())
    assert status.data_age_s == 0.0


def test_overall_status_is_the_worst_enabled_source() -> None:
    healthy = judged()
    disabled = judged(policy_=policy(enabled=False))
    degraded = judged(facts(finished_status="interrupted"))
    failing = judged(facts(finished_status="failed"))
    assert overall([healthy, disabled]) == "healthy"
    assert overall([healthy, degraded]) == "degraded"
    assert overall([degraded, failing]) == "failing"
    assert overall([]) == "healthy"
