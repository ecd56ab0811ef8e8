"""The anomaly rules on realistic run histories: a healthy pipeline raises none (no-op runs,
incremental sources, jitter), real anomalies are still caught, each once."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from cryptoetl.api.anomalies import is_no_op, judge
from cryptoetl.api.schemas import RunItem
from tests.unit.api.dashboard.helpers import run

Spec = dict[str, object]


def history(source: str, specs: Sequence[Spec], every_min: float = 5) -> list[RunItem]:
    """Runs oldest first, ``every_min`` apart; each spec overrides :func:`run`'s arguments."""
    n = len(specs)
    return [
        run(source=source, minutes_ago=(n - k) * every_min, **spec)  # type: ignore[arg-type]
        for k, spec in enumerate(specs)
    ]


def flags(runs: Sequence[RunItem]) -> dict[int, list[str]]:
    """The rules raised for each run (by position), judged as /compare-runs and the dashboard
    judge them: against the previous finished run and the successes before it."""
    found = {}
    for k, b in enumerate(runs):
        earlier = list(reversed(runs[:k]))
        a = next((r for r in earlier if r.status != "running"), None)
        rules = [x.rule for x in judge(a, b, earlier).anomalies]
        if rules:
            found[k] = rules
    return found


def coingecko(rng: random.Random, n: int = 60) -> list[Spec]:
    """250 coins a run; one run in ten the upstream had not moved (the same snapshot)."""
    return [
        {
            "processed": 250,
            "inserted": 0 if rng.random() < 0.1 else 250,
            "duration": rng.uniform(3, 5),
        }
        for _ in range(n)
    ]


def coinpaprika(rng: random.Random, n: int = 60) -> list[Spec]:
    """Every active ticker, a few more or fewer from run to run."""
    specs: list[Spec] = []
    for _ in range(n):
        processed = 2500 + rng.randint(-5, 5)
        specs.append({"processed": processed, "duration": rng.uniform(8, 12)})
    return specs


def rss(rng: random.Random, n: int = 60) -> list[Spec]:
    """One run in three a 304; a 200 brings the whole feed, mostly entries already stored."""
    specs: list[Spec] = []
    for k in range(n):
        if k % 3 == 2:
            specs.append({"processed": 0, "inserted": 0, "duration": rng.uniform(0.2, 0.4)})
        else:
            inserted = rng.choice([0, 0, 1, 2, 3])
            specs.append({"processed": 30, "inserted": inserted, "duration": rng.uniform(0.5, 1.2)})
    return specs


def csv(rng: random.Random, n: int = 60) -> list[Spec]:
    """A first load, then unchanged files (one stat each), an append now and then."""
    specs: list[Spec] = [{"processed": 10_000, "duration": 12.0}]
    for k in range(1, n):
        if k % 10 == 0:
            rows = rng.randint(20, 30)
            specs.append({"processed": rows, "duration": rng.uniform(0.2, 0.4)})
        else:
            specs.append({"processed": 0, "inserted": 0, "duration": rng.uniform(0.01, 0.05)})
    return specs


SOURCES = {"coingecko": coingecko, "coinpaprika": coinpaprika, "rss": rss, "csv": csv}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_healthy_history_raises_no_anomaly(source: str, seed: int) -> None:
    runs = history(source, SOURCES[source](random.Random(seed)))
    assert flags(runs) == {}


def test_repeated_no_op_runs_are_not_outliers() -> None:
    """The false alarm of issue 13: 'processed 0 is outside [50.5, 151.5]' on every 304."""
    productive: list[Spec] = [{"processed": 100 + k % 3} for k in range(10)]
    no_ops: list[Spec] = [{"processed": 0, "inserted": 0, "duration": 0.3} for _ in range(20)]
    runs = history("rss", productive + no_ops)
    assert all(is_no_op(r) for r in runs[10:])
    assert flags(runs) == {}
    judged = judge(runs[-2], runs[-1], list(reversed(runs[:-1])))
    assert judged.baseline.run_b_no_op is True
    assert judged.baseline.skipped == [
        "processed: run_b is a no-op run (it inserted and updated nothing)"
    ]
    # The same snapshot again: processed, but nothing written: a no-op too.
    same = run(processed=101, inserted=0)
    assert is_no_op(same)
    assert not is_no_op(run("failed", processed=0, inserted=0))


def test_a_real_drop_is_flagged() -> None:
    specs = coingecko(random.Random(1), 30)
    specs.append({"processed": 50, "duration": 4.0})  # 200 coins missing, the rest new
    runs = history("coingecko", specs)
    assert flags(runs) == {30: ["processed_outside_3_sigma"]}
    anomaly = judge(runs[29], runs[30], list(reversed(runs[:30]))).anomalies[0]
    assert anomaly.expected_low is not None
    assert anomaly.expected_low > 50
    # With few runs behind it, the wider band still catches it.
    few = history("coingecko", [{"processed": 250}, {"processed": 250}, {"processed": 50}])
    assert flags(few) == {2: ["processed_outside_50_pct"]}


def test_real_anomalies_are_each_flagged_once() -> None:
    rng = random.Random(7)
    specs = coinpaprika(rng, 20)
    specs += [{"status": "failed", "processed": 0, "error": "HTTP 502"}] * 2  # fails, keeps failing
    specs += coinpaprika(rng, 5)
    specs.append({"processed": 2500, "duration": 60.0})  # rate limited: 5x slower
    specs += [{"processed": 2500, "drift": 2}] * 3  # the upstream renamed a field, and stays so
    specs.append({"processed": 2500, "rejected": 600})  # a quarter of the rows rejected
    specs.append({"processed": 2500, "rejected": 600})  # ... and again: already flagged
    found = flags(history("coinpaprika", specs))
    assert found == {
        20: ["success_to_failure"],  # once: its empty counts are not a second finding
        # 21 keeps failing: not flagged again (its status says failing all along)
        27: ["duration_over_3x_median"],
        28: ["schema_drift"],
        31: ["rejected_share_over_10_pct"],
    }


def test_incremental_and_interrupted_runs_are_not_judged_on_counts() -> None:
    csv_runs = history("csv", [{"processed": 10_000}, {"processed": 24}, {"processed": 5}])
    assert flags(csv_runs) == {}
    judged = judge(csv_runs[1], csv_runs[2], list(reversed(csv_runs[:2])))
    assert judged.baseline.skipped == [
        "processed: a csv run reads only what is new (no expected count)"
    ]
    interrupted: Spec = {"status": "interrupted", "processed": 40, "duration": 90.0}
    stopped = history("coingecko", [{"processed": 250}] * 6 + [interrupted])
    assert flags(stopped) == {}
    failed: Spec = {"status": "failed", "processed": 3, "duration": 90.0, "error": "HTTP 502"}
    broken = history("coingecko", [{"processed": 250, "duration": 4.0}] * 6 + [failed])
    assert flags(broken) == {6: ["success_to_failure"]}
    judged = judge(broken[5], broken[6], list(reversed(broken[:6])))
    assert judged.baseline.skipped == ["processed: run_b failed (its counts stop where it failed)"]


def test_sub_second_jitter_is_not_slow() -> None:
    usual: list[Spec] = [{"processed": 30, "duration": 0.1}] * 10
    assert flags(history("rss", [*usual, {"processed": 30, "duration": 0.9}])) == {}
    slow = history("rss", [*usual, {"processed": 30, "duration": 1.2}])
    assert flags(slow) == {10: ["duration_over_3x_median"]}
