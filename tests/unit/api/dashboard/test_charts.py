"""The SVG charts: bar and line scales, the twenty-run window, empty data, anomaly markers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cryptoetl.api.dashboard.charts import nice_ticks, scale
from cryptoetl.api.dashboard.views import Series, TimelineRun
from cryptoetl.api.schemas import Anomaly
from tests.unit.api.dashboard.helpers import NOW, Tags, price_svg, run, timeline_svg


def _bars(svg: str, panel: str) -> list[dict[str, str]]:
    return Tags(svg).find("rect", panel)


def test_bar_heights_scale_to_the_largest_run() -> None:
    items = [
        TimelineRun(run(duration=1.0, processed=0, minutes_ago=3)),
        TimelineRun(run("failed", duration=2.0, processed=50, minutes_ago=2)),
        TimelineRun(run("interrupted", duration=4.0, processed=100, minutes_ago=1)),
    ]
    svg = timeline_svg("csv", items)
    durations = _bars(svg, "duration")
    assert [float(b["height"]) for b in durations] == [12.5, 25.0, 50.0]
    records = _bars(svg, "records")
    assert [float(b["height"]) for b in records] == [1.0, 25.0, 50.0]  # zero: a 1px tick
    assert records[0]["fill-opacity"] == "0.55"
    # Bars stand on their panel's baseline.
    for bar in durations:
        assert float(bar["y"]) + float(bar["height"]) == pytest.approx(66.0)
    assert [b["fill"] for b in durations] == ["#2da44e", "#cf222e", "#bf8700"]
    assert [b["data-status"] for b in durations] == ["success", "failed", "interrupted"]
    # Right-aligned: the newest run sits in the last of the 20 slots.
    xs = [float(b["x"]) for b in durations]
    assert xs == sorted(xs)
    slot = (544 - 78) / 20
    assert xs[-1] == pytest.approx(78 + 19 * slot + (slot - slot * 0.68) / 2, abs=0.06)
    assert "max 4.00 s" in svg
    assert "max 100" in svg


def test_timeline_flags_anomalies_with_their_rules() -> None:
    previous = run(minutes_ago=2)
    flagged = run("failed", minutes_ago=1, error="boom")
    rules = (
        Anomaly(rule="success_to_failure", field="status", message="run_b failed: boom"),
        Anomaly(rule="schema_drift", field="drift_events", message="2 drift events"),
    )
    svg = timeline_svg("csv", [TimelineRun(previous), TimelineRun(flagged, rules, previous.id)])
    markers = Tags(svg).find("path", "anomaly-marker")
    assert [m["data-rules"] for m in markers] == ["success_to_failure,schema_drift"]
    assert markers[0]["data-run-id"] == flagged.id
    assert "⚠ success_to_failure: run_b failed: boom" in svg  # tooltip


def test_timeline_shows_the_last_twenty_runs_and_handles_none() -> None:
    items = [TimelineRun(run(minutes_ago=100 - k, processed=k)) for k in range(30)]
    svg = timeline_svg("csv", items)
    bars = _bars(svg, "records")
    assert len(bars) == 20
    assert [b["data-run-id"] for b in bars] == [i.run.id for i in items[-20:]]
    empty = timeline_svg("csv", [])
    assert "no runs yet" in empty
    assert not _bars(empty, "records")
    running = timeline_svg("csv", [TimelineRun(run("running", duration=None))])
    assert _bars(running, "duration")[0]["fill"] == "#0969da"
    assert _bars(running, "duration")[0]["height"] == "1.0"


def _coords(svg: str, source: str) -> list[tuple[float, float]]:
    (line,) = [p for p in Tags(svg).find("polyline", "series") if p["data-source"] == source]
    return [tuple(map(float, pair.split(","))) for pair in line["points"].split()]  # type: ignore[misc]


def test_polylines_share_one_time_and_price_scale() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    series = [
        Series("csv", ((t0, 10.0), (t0 + timedelta(days=2), 20.0))),
        Series("coingecko", ((t0 + timedelta(days=1), 15.0),)),
    ]
    svg = price_svg(series, width=1000, height=400)
    left, right, top, bottom = 84.0, 982.0, 24.0, 366.0
    # Ticks 10, 12.5 ... 20 cover the values exactly: the extremes touch the plot's edges.
    assert _coords(svg, "csv") == [(left, bottom), (right, top)]
    assert _coords(svg, "coingecko") == [((left + right) / 2, (top + bottom) / 2)]
    tags = Tags(svg)
    assert tags.find("svg")[0]["data-y-min"] == "10.0"
    assert tags.find("svg")[0]["data-y-max"] == "20.0"
    for label in ("10.0", "12.5", "15.0", "17.5", "20.0", "2025-01-01", "2025-01-03"):
        assert f">{label}</text>" in svg
    latest = {c["data-source"]: c for c in tags.find("circle", "latest")}
    assert set(latest) == {"csv", "coingecko"}
    assert float(latest["csv"]["r"]) > float(latest["coingecko"]["r"])  # drawn as rings


def test_chart_of_a_single_point_and_of_nothing() -> None:
    svg = price_svg([Series("coinpaprika", ((NOW, 69_150.12),))], width=1000, height=400)
    ((x, y),) = _coords(svg, "coinpaprika")
    assert x == pytest.approx((84 + 982) / 2)  # one instant: the middle of a 24 h window
    assert 24 <= y <= 366
    empty = price_svg([])
    assert "no price data yet" in empty
    assert not Tags(empty).find("polyline")
    assert "no price data yet" in price_svg([Series("csv", ())])


def test_scale_and_nice_ticks() -> None:
    assert scale(5, 0, 10, 100, 200) == 150
    assert scale(5, 5, 5, 100, 200) == 150
    assert scale(10, 0, 10, 300, 20) == 20  # inverted (SVG y grows downwards)
    assert nice_ticks(0, 10) == [0, 2.5, 5, 7.5, 10]
    assert nice_ticks(49_000, 50_500) == [49_000, 49_500, 50_000, 50_500]
    assert nice_ticks(9_400, 69_163) == [0, 20_000, 40_000, 60_000, 80_000]
    assert nice_ticks(0.31, 0.33) == [0.31, 0.315, 0.32, 0.325, 0.33]
    assert nice_ticks(5, 5) == [4.95, 4.975, 5.0, 5.025, 5.05]
    assert nice_ticks(0, 0) == [-1, -0.5, 0, 0.5, 1]
    assert nice_ticks(10, 0) == nice_ticks(0, 10)
    assert nice_ticks(float("nan"), 1) == [0.0, 1.0]
    assert nice_ticks(-1e308, 1e308) == [-1e308, 1e308]
