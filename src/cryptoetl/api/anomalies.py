"""Anomaly rules: is a run unlike the runs before it? Shared by ``/compare-runs`` and the dashboard.

``run_b`` is judged against ``run_a`` (the run before it, or any run the client names) and its
source's history: the newest :data:`HISTORY_RUNS` successful runs that started before it. Rules
compare like with like, so that a healthy pipeline raises none:

* a **no-op run** is a successful run that inserted and updated nothing: it processed nothing (an
  RSS ``304``, an unchanged CSV file) or only rows it already had (the same snapshot again).
  Doing nothing is normal for incremental sources; a frozen upstream is caught by freshness
  (:mod:`cryptoetl.api.status`), not here;
* a **productive run** is any other finished run.

Rules, each reported with its name:

* ``processed_outside_3_sigma``: with >= :data:`MIN_RUNS_FOR_SIGMA` productive runs in the
  baseline (the newest :data:`BASELINE_RUNS` of the history), ``processed`` outside mean ± 3
  standard deviations, at least ± :data:`MIN_BAND_PCT` % of the mean (a source that always
  returns the same count has no deviation: one coin more is no anomaly);
* ``processed_outside_50_pct``: with fewer (but some), outside mean ± 50 %.
  Both ignore no-op runs (they are not outliers of processed counts, and are not in the
  baseline), interrupted runs (their counts are partial by design: a worker was stopped),
  failed runs (their counts stop where they failed; the failure is the finding, flagged by
  ``success_to_failure``, not a second time as a drop in volume) and sources whose runs read
  only what is new (:data:`INCREMENTAL_SOURCES`: a CSV run processes what was appended since
  the checkpoint, which has no expected value);
* ``duration_over_3x_median``: more than 3x the median duration of the baseline runs of the
  same kind (no-op with no-op, productive with productive) and more than
  :data:`MIN_DURATION_EXCESS_S` longer (sub-second jitter is not an anomaly); not for
  interrupted or failed runs (they ended early, or late for the reason their error gives);
* ``success_to_failure``: ``run_a`` succeeded and ``run_b`` failed (a source that keeps failing
  is flagged once; its status says *failing* all along);
* ``rejected_share_over_10_pct``: more than 10 % of the records ``run_b`` looked at were
  rejected, and ``run_a``'s share was not already above 10 % (the same bad rows re-read every
  run are flagged when they appear, and counted on the dashboard and in ``/metrics``);
* ``schema_drift``: ``run_b`` recorded more schema drift events than ``run_a`` (an upstream
  change is recorded again by every run that sees it; it is flagged when it appears).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from cryptoetl.api.schemas import Anomaly, Baseline, RunItem

HISTORY_RUNS = 100
BASELINE_RUNS = 20
MIN_RUNS_FOR_SIGMA = 5
MIN_BAND_PCT = 20
MIN_DURATION_EXCESS_S = 1.0
REJECTED_SHARE = 0.10
INCREMENTAL_SOURCES = frozenset({"csv"})
PARTIAL_STATUSES = frozenset({"interrupted", "failed"})


def is_no_op(run: RunItem) -> bool:
    """A successful run that inserted and updated nothing (see the module docstring)."""
    return run.status == "success" and run.inserted == 0 and run.updated == 0


@dataclass(frozen=True, slots=True)
class Judgement:
    anomalies: list[Anomaly]
    baseline: Baseline


def _volume_skip(b: RunItem) -> str | None:
    if b.status == "interrupted":
        return "processed: run_b was interrupted (its counts are partial)"
    if b.status == "failed":
        return "processed: run_b failed (its counts stop where it failed)"
    if is_no_op(b):
        return "processed: run_b is a no-op run (it inserted and updated nothing)"
    if b.source_type in INCREMENTAL_SOURCES:
        return f"processed: a {b.source_type} run reads only what is new (no expected count)"
    return None


def _processed_rule(b: RunItem, processed: Sequence[int]) -> Anomaly | None:
    if not processed:
        return None
    mean = statistics.fmean(processed)
    if len(processed) >= MIN_RUNS_FOR_SIGMA:
        rule = "processed_outside_3_sigma"
        half_width = max(3 * statistics.stdev(processed), MIN_BAND_PCT / 100 * mean)
        why = (
            f"mean ± 3 sigma (at least ± {MIN_BAND_PCT}%) of the last {len(processed)} "
            "productive successful runs"
        )
    else:
        rule, half_width = "processed_outside_50_pct", 0.5 * mean
        why = (
            f"mean ± 50% of the last {len(processed)} productive successful run(s) "
            "(too few for 3 sigma)"
        )
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
    if b.duration_s is None or not durations or b.status in PARTIAL_STATUSES:
        return None
    median = statistics.median(durations)
    limit = max(3 * median, median + MIN_DURATION_EXCESS_S)
    if b.duration_s <= limit:
        return None
    kind = "no-op" if is_no_op(b) else "productive"
    return Anomaly(
        rule="duration_over_3x_median",
        field="duration_s",
        message=(
            f"took {b.duration_s:.3f}s, more than 3x the median {median:.3f}s of the last "
            f"{len(durations)} {kind} successful runs"
        ),
        value=b.duration_s,
        expected_high=round(limit, 6),
    )


def _share(run: RunItem) -> float:
    return run.rejected / run.processed if run.processed else 0.0


def _change_rules(a: RunItem | None, b: RunItem) -> list[Anomaly]:
    found = []
    if a is not None and a.status == "success" and b.status == "failed":
        found.append(
            Anomaly(
                rule="success_to_failure",
                field="status",
                message=f"run_a succeeded, run_b failed: {b.error or 'no error recorded'}",
            )
        )
    if _share(b) > REJECTED_SHARE and (a is None or _share(a) <= REJECTED_SHARE):
        found.append(
            Anomaly(
                rule="rejected_share_over_10_pct",
                field="rejected",
                message=f"{b.rejected} of {b.processed} records rejected",
                value=b.rejected,
                expected_high=round(REJECTED_SHARE * b.processed, 3),
            )
        )
    before = a.drift_events if a is not None else 0
    if b.drift_events > before:
        found.append(
            Anomaly(
                rule="schema_drift",
                field="drift_events",
                message=f"{b.drift_events} schema drift event(s) recorded (run_a: {before})",
                value=b.drift_events,
            )
        )
    return found


def judge(a: RunItem | None, b: RunItem, history: Sequence[RunItem]) -> Judgement:
    """The anomalies of ``b`` against ``a`` and ``history`` (runs of b's source, newest first;
    only the successful ones that started before ``b`` are used, at most :data:`HISTORY_RUNS`)."""
    earlier = [r for r in history if r.status == "success" and r.started_at < b.started_at]
    earlier = earlier[:HISTORY_RUNS]
    productive = [r for r in earlier if not is_no_op(r)][:BASELINE_RUNS]
    same_kind = [r for r in earlier if is_no_op(r) == is_no_op(b)][:BASELINE_RUNS]
    processed = [r.processed for r in productive]
    durations = [r.duration_s for r in same_kind if r.duration_s is not None]
    skipped = _volume_skip(b)
    found = [] if skipped else [_processed_rule(b, processed)]
    found.append(_duration_rule(b, durations))
    anomalies = [x for x in found if x is not None] + _change_rules(a, b)
    baseline = Baseline(
        runs=len(productive),
        mean_processed=statistics.fmean(processed) if processed else None,
        stddev_processed=statistics.stdev(processed) if len(processed) > 1 else None,
        median_duration_s=statistics.median(durations) if durations else None,
        duration_runs=len(durations),
        run_b_no_op=is_no_op(b),
        skipped=[skipped] if skipped else [],
    )
    return Judgement(anomalies, baseline)
