"""The dashboard's pure parts: HTML escaping, SVG bar and line scales, empty data, formatting,
the status rules and how runs are judged (ui_render.py and the pure helpers of ui.py)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from cryptoetl.api import runs as runs_api
from cryptoetl.api.schemas import (
    Anomaly,
    AssetListItem,
    AssetMapping,
    AssetRef,
    NewsItem,
    RunItem,
    SeriesRef,
    SourcePrice,
)
from cryptoetl.api.ui import classify, judge_runs, overall_status
from cryptoetl.api.ui_render import (
    AssetListPage,
    AssetPage,
    Dashboard,
    Series,
    SourceView,
    TimelineRun,
    asset_list_page,
    asset_page,
    dashboard_page,
    error_page,
    esc,
    fmt_duration,
    fmt_int,
    fmt_pct,
    fmt_price,
    fmt_relative,
    nice_ticks,
    price_chart_svg,
    run_timeline_svg,
    safe_href,
    scale,
    timeline_card,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;"


def run(
    status: str = "success",
    *,
    minutes_ago: float = 10,
    duration: float | None = 2.0,
    processed: int = 100,
    error: str | None = None,
    drift: int = 0,
    rejected: int = 0,
) -> RunItem:
    started = NOW - timedelta(minutes=minutes_ago)
    return RunItem(
        id=str(uuid.uuid4()),
        source_type="csv",
        status=status,
        worker_id="w",
        started_at=started,
        finished_at=None if duration is None else started + timedelta(seconds=duration),
        duration_s=duration,
        processed=processed,
        inserted=processed,
        updated=0,
        unchanged=0,
        rejected=rejected,
        drift_events=drift,
        raw_stored=0,
        warnings=[],
        error=error,
    )


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and (cls is None or cls in a.get("class", "").split())
        ]


def assert_inert(html: str) -> None:
    """No markup from the data survived: no script, no img, no event handler, no js: link."""
    assert HOSTILE not in html
    tags = Tags(html)
    assert not [t for t, _ in tags.tags if t in ("script", "img", "iframe")]
    assert not [a for _, a in tags.tags for k in a if k.startswith("on")]
    assert not [a for t, a in tags.tags if t == "a" and "javascript" in a.get("href", "")]
    assert "&lt;script&gt;" in html


# --- escaping ---------------------------------------------------------------------------------


def test_esc_escapes_text_and_attribute_syntax() -> None:
    assert esc(HOSTILE) == (
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&gt;&lt;img src=x "
        "onerror=alert(1)&gt;&amp;amp;"
    )
    assert esc(None) == ""
    assert esc(42) == "42"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://news.example/a?b=1&c=2", "https://news.example/a?b=1&c=2"),
        ("http://x.example", "http://x.example"),
        ("javascript:alert(1)", None),
        ("JaVaScRiPt:alert(1)", None),
        (" javascript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("/relative/path", None),
        ("//evil.example/x", None),
        ("https://", None),
        ("http://[::1", None),  # unparseable
        ("", None),
        (None, None),
    ],
)
def test_only_http_urls_become_links(url: str | None, expected: str | None) -> None:
    assert safe_href(url) == expected


def _hostile_dashboard() -> Dashboard:
    failed = run("failed", error=HOSTILE, minutes_ago=1)
    anomaly = Anomaly(rule=HOSTILE, field="status", message=HOSTILE)
    view = SourceView(
        source="coinpaprika",
        status="failing",
        reasons=(HOSTILE,),
        last_success_at=NOW - timedelta(hours=2),
        last_failure_at=NOW - timedelta(minutes=1),
        last_error=HOSTILE,
        records=12,
        last_run=failed,
        next_run_at=NOW + timedelta(minutes=4),
        interval_s=300,
        drift_since=1,
        rejects_since=2,
        runs_since=2,
        latest_anomalies=(anomaly,),
    )
    return Dashboard(
        now=NOW,
        overall="failing",
        sources=(view,),
        timelines={"coinpaprika": (TimelineRun(run()), TimelineRun(failed, (anomaly,), "a-id"))},
        records_total=12,
    )


def test_dashboard_escapes_every_value_from_the_database() -> None:
    html = dashboard_page(_hostile_dashboard())
    assert_inert(html)
    assert "<script" not in html.lower()


def test_asset_pages_escape_every_value_from_the_database() -> None:
    asset = AssetRef(id=7, slug=HOSTILE, symbol=HOSTILE, name=HOSTILE)
    view = AssetPage(
        now=NOW,
        asset=asset,
        mappings=[
            AssetMapping(
                source_type="coingecko",
                source_id=HOSTILE,
                symbol=HOSTILE,
                name=HOSTILE,
                method=HOSTILE,
                confidence=0.8,
            )
        ],
        prices=[
            SourcePrice(
                source_type="coingecko",
                source_id=HOSTILE,
                series=SeriesRef(id=1, venue=HOSTILE, base=HOSTILE, quote=HOSTILE, interval=None),
                quote=HOSTILE,
                price=1.5,
                price_usd=1.5,
                market_cap_usd=None,
                volume_24h_usd=None,
                change_24h_pct=None,
                rank=None,
                source_timestamp=NOW,
            )
        ],
        spread_pct=None,
        news=[
            NewsItem(
                id=1,
                source_type="rss",
                source_id=HOSTILE,
                title=HOSTILE,
                url="javascript:alert(document.cookie)",
                author=HOSTILE,
                category=HOSTILE,
                source_timestamp=NOW,
            )
        ],
        series=[
            Series(
                HOSTILE, ((NOW, 1.0), (NOW + timedelta(hours=1), 2.0)), HOSTILE, HOSTILE, HOSTILE
            )
        ],
    )
    assert_inert(asset_page(view))
    listing = AssetListPage(
        items=[AssetListItem(id=1, slug=HOSTILE, symbol=HOSTILE, name=HOSTILE, records=3)],
        page=1,
        page_size=50,
        total=1,
        search=HOSTILE,
    )
    assert_inert(asset_list_page(listing))
    assert_inert(error_page(404, HOSTILE))


def test_pages_refresh_without_javascript() -> None:
    html = dashboard_page(_hostile_dashboard())
    assert html.startswith("<!doctype html>")
    assert '<meta http-equiv="refresh" content="30">' in html
    assert '<meta charset="utf-8">' in html
    for href in ("/health", "/stats", "/runs", "/compare-runs?source=csv", "/assets"):
        assert f'href="{href}"' in html
    assert "refresh" not in asset_list_page(AssetListPage(items=[], page=1, page_size=50, total=0))


def test_status_is_shown_by_word_and_colour() -> None:
    html = dashboard_page(_hostile_dashboard())
    pills = Tags(html).find("span", "pill")
    assert pills
    assert all(p["class"] == "pill s-failing" for p in pills)
    assert re.search(r'<span class="pill s-failing" data-status="failing">failing</span>', html)
    assert ".s-failing{color:var(--bad)" in html


# --- timeline bars ----------------------------------------------------------------------------


def _bars(svg: str, panel: str) -> list[dict[str, str]]:
    return Tags(svg).find("rect", panel)


def test_bar_heights_scale_to_the_largest_run() -> None:
    items = [
        TimelineRun(run(duration=1.0, processed=0, minutes_ago=3)),
        TimelineRun(run("failed", duration=2.0, processed=50, minutes_ago=2)),
        TimelineRun(run("interrupted", duration=4.0, processed=100, minutes_ago=1)),
    ]
    svg = run_timeline_svg("csv", items)
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
    svg = run_timeline_svg("csv", [TimelineRun(previous), TimelineRun(flagged, rules, previous.id)])
    markers = Tags(svg).find("path", "anomaly-marker")
    assert [m["data-rules"] for m in markers] == ["success_to_failure,schema_drift"]
    assert markers[0]["data-run-id"] == flagged.id
    assert "⚠ success_to_failure: run_b failed: boom" in svg  # tooltip
    dashboard = dashboard_page(
        Dashboard(
            now=NOW,
            overall="failing",
            sources=(),
            timelines={},
            records_total=0,
        )
    )
    assert not Tags(dashboard).find("svg", "timeline")  # no sources, no charts
    card = timeline_card("csv", [TimelineRun(previous), TimelineRun(flagged, rules, previous.id)])
    assert f'href="/compare-runs?run_a={previous.id}&amp;run_b={flagged.id}"' in card
    assert "<code>schema_drift</code>" in card


def test_timeline_shows_the_last_twenty_runs_and_handles_none() -> None:
    items = [TimelineRun(run(minutes_ago=100 - k, processed=k)) for k in range(30)]
    svg = run_timeline_svg("csv", items)
    bars = _bars(svg, "records")
    assert len(bars) == 20
    assert [b["data-run-id"] for b in bars] == [i.run.id for i in items[-20:]]
    empty = run_timeline_svg("csv", [])
    assert "no runs yet" in empty
    assert not _bars(empty, "records")
    running = run_timeline_svg("csv", [TimelineRun(run("running", duration=None))])
    assert _bars(running, "duration")[0]["fill"] == "#0969da"
    assert _bars(running, "duration")[0]["height"] == "1.0"


# --- price chart ------------------------------------------------------------------------------


def _coords(svg: str, source: str) -> list[tuple[float, float]]:
    (line,) = [p for p in Tags(svg).find("polyline", "series") if p["data-source"] == source]
    return [tuple(map(float, pair.split(","))) for pair in line["points"].split()]  # type: ignore[misc]


def test_polylines_share_one_time_and_price_scale() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    series = [
        Series("csv", ((t0, 10.0), (t0 + timedelta(days=2), 20.0))),
        Series("coingecko", ((t0 + timedelta(days=1), 15.0),)),
    ]
    svg = price_chart_svg(series, width=1000, height=400)
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
    svg = price_chart_svg([Series("coinpaprika", ((NOW, 69_150.12),))], width=1000, height=400)
    ((x, y),) = _coords(svg, "coinpaprika")
    assert x == pytest.approx((84 + 982) / 2)  # one instant: the middle of a 24 h window
    assert 24 <= y <= 366
    empty = price_chart_svg([])
    assert "no price data yet" in empty
    assert not Tags(empty).find("polyline")
    assert "no price data yet" in price_chart_svg([Series("csv", ())])


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


# --- formatting -------------------------------------------------------------------------------


def test_formatting() -> None:
    assert fmt_int(1234567) == "1,234,567"
    assert fmt_int(None) == "—"
    assert fmt_price(69_163) == "69,163.00"
    assert fmt_price(0.312) == "0.3120"
    assert fmt_price(0.0000123) == "1.23e-05"
    assert fmt_price(float("inf")) == "—"
    assert fmt_pct(3.0612244) == "3.06%"
    assert fmt_pct(0.0188) == "0.019%"
    assert fmt_duration(0.42) == "0.42 s"
    assert fmt_duration(12.34) == "12.3 s"
    assert fmt_duration(60) == "1 min"
    assert fmt_duration(125) == "2 min 5 s"
    assert fmt_duration(3600) == "1 h"
    assert fmt_duration(3 * 86400 + 7200) == "3 d 2 h"
    assert fmt_duration(None) == "—"
    assert fmt_relative(NOW - timedelta(seconds=5), NOW) == "5 s ago"
    assert fmt_relative(NOW + timedelta(minutes=4, seconds=58), NOW) == "in 4 min 58 s"
    assert fmt_relative(None, NOW) == "—"


# --- status and judging -----------------------------------------------------------------------


def _classify(**overrides: object) -> tuple[str, list[str]]:
    last = run(minutes_ago=1)
    args: dict[str, object] = {
        "enabled": True,
        "last_finished": last,
        "latest": last,
        "last_success_at": last.finished_at,
        "next_run_at": NOW + timedelta(seconds=30),
        "interval_s": 60,
        "stale_after_s": 3600,
        "now": NOW,
    }
    args.update(overrides)
    return classify(**args)  # type: ignore[arg-type]


def test_status_rules() -> None:
    assert _classify() == ("healthy", [])
    assert _classify(enabled=False) == ("disabled", ["not in ENABLED_SOURCES"])
    assert _classify(latest=None, last_finished=None) == ("degraded", ["never ran"])
    failed = run("failed", minutes_ago=1)
    status, reasons = _classify(last_finished=failed, latest=failed)
    assert (status, reasons) == ("failing", ["last run failed"])
    interrupted = run("interrupted", minutes_ago=1)
    assert _classify(last_finished=interrupted, latest=interrupted)[0] == "degraded"
    assert _classify(last_success_at=None) == ("degraded", ["no successful run yet"])
    stale = _classify(last_success_at=NOW - timedelta(hours=2))
    assert stale == ("degraded", ["no success for 2 h"])
    # Late by less than one interval: still healthy; by more: degraded.
    assert _classify(next_run_at=NOW - timedelta(seconds=59))[0] == "healthy"
    assert _classify(next_run_at=NOW - timedelta(seconds=61)) == (
        "degraded",
        ["next run overdue by 1 min 1 s"],
    )
    # A run in progress is never overdue.
    running = run("running", duration=None, minutes_ago=5)
    assert _classify(latest=running, next_run_at=NOW - timedelta(hours=1))[0] == "healthy"


def test_overall_status_is_the_worst_source() -> None:
    def view(status: str) -> SourceView:
        return SourceView(
            source="csv",
            status=status,
            reasons=(),
            last_success_at=None,
            last_failure_at=None,
            last_error=None,
            records=0,
            last_run=None,
            next_run_at=None,
            interval_s=60,
            drift_since=0,
            rejects_since=0,
            runs_since=0,
        )

    assert overall_status([view("healthy"), view("disabled")]) == "healthy"
    assert overall_status([view("healthy"), view("degraded")]) == "degraded"
    assert overall_status([view("degraded"), view("failing")]) == "failing"
    assert overall_status([]) == "healthy"


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
    # Exactly what runs.anomalies says for the same pair and baseline.
    expected = runs_api.anomalies(
        slow, failed, [r.processed for r in [slow, *reversed(history)]], [30.0] + [2.0] * 6
    )
    assert list(by_id[failed.id].anomalies) == expected
    assert by_id[failed.id].judged_against == slow.id
    assert {a.rule for a in by_id[failed.id].anomalies} >= {
        "success_to_failure",
        "processed_outside_3_sigma",
    }
    assert [a.rule for a in by_id[slow.id].anomalies] == ["duration_over_3x_median"]


def test_judging_uses_history_beyond_the_shown_runs() -> None:
    old = [run(minutes_ago=500 - k, processed=100, duration=1.0) for k in range(25)]
    shown = [run(minutes_ago=100 - k, processed=100 if k else 500, duration=1.0) for k in range(21)]
    rows = list(reversed(shown))  # 21 newest first: 20 shown + 1 for run_a
    judged = judge_runs(rows, list(reversed(old))[: runs_api.BASELINE_RUNS])
    assert len(judged) == 20
    # The 21st row (500 processed) is only a reference and a baseline member.
    assert judged[0].run.id == shown[1].id
    assert judged[0].judged_against == shown[0].id
    assert judged[0].anomalies == ()  # 100 vs a baseline of 500 and 19 x 100: within 3 sigma
