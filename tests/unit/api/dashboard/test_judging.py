"""The dashboard's timelines judge each run exactly as /compare-runs judges ``run_b``."""

from __future__ import annotations

from cryptoetl.api import anomalies
from cryptoetl.api.dashboard.queries import judge_runs
from tests.unit.api.dashboard.helpers import run


def test_runs_are_judged_by_the_compare_runs_rules() -> None:
    history = [run(minutes_ago=60 - k, processed=100 + k % 3, duration=2.0) for k in range(6)]
    slow = run(minutes_ago=40, processed=101, duration=30.0)
    failed = run("failed", minutes_ago=30, processed=0, error="boom")
    running = run("running", minutes_ago=1, duration=None, processed=3)
    rows = [running, failed, slow, *reversed(history)]  # newest first
    judged = judge_runs(rows, [])
    assert [t.run.id for t in judged] == [r.id for r in reversed(rows)]  # oldest first
    by_id = {t.run.id: t for t in judged}
    assert by_id[running.id].anomalies == ()
    assert by_id[history[0].id].anomalies == ()  # no baseline, no previous run
    assert by_id[history[0].id].judged_against is None
    # Exactly what the shared rules say for the same pair and history.
    expected = anomalies.judge(slow, failed, [slow, *reversed(history)]).anomalies
    assert list(by_id[failed.id].anomalies) == expected
    assert by_id[failed.id].judged_against == slow.id
    # Flagged once, as a failure: its empty counts are not a second finding.
    assert [a.rule for a in by_id[failed.id].anomalies] == ["success_to_failure"]
    assert [a.rule for a in by_id[slow.id].anomalies] == ["duration_over_3x_median"]


def test_judging_uses_history_beyond_the_shown_runs() -> None:
    old = [run(minutes_ago=500 - k, processed=100, duration=1.0) for k in range(25)]
    shown = [run(minutes_ago=100 - k, processed=100 if k else 500, duration=1.0) for k in range(21)]
    rows = list(reversed(shown))  # 21 newest first: 20 shown + 1 for run_a
    judged = judge_runs(rows, list(reversed(old))[: anomalies.BASELINE_RUNS])
    assert len(judged) == 20
    # The 21st row (500 processed) is only a reference and a baseline member.
    assert judged[0].run.id == shown[1].id
    assert judged[0].judged_against == shown[0].id
    assert judged[0].anomalies == ()  # 100 vs a baseline of 500 and 19 x 100: within 3 sigma
