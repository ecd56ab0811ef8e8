"""The dashboard's pages as the templates render them: every value escaped by the engine, no
script, refresh without JavaScript, status by word and colour, the anomaly list."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from cryptoetl.api.dashboard import pages, render
from cryptoetl.api.dashboard.views import (
    AssetListPage,
    AssetPage,
    Dashboard,
    Series,
    SourceView,
    TimelineRun,
)
from cryptoetl.api.schemas import (
    Anomaly,
    AssetListItem,
    AssetMapping,
    AssetRef,
    NewsItem,
    SeriesRef,
    SourcePrice,
)
from tests.unit.api.dashboard.helpers import (
    HOSTILE,
    NOW,
    Tags,
    facts,
    judged,
    page_html,
    policy,
    run,
)


def assert_inert(html: str) -> None:
    """No markup from the data survived: no script, no img, no event handler, no js: link."""
    assert HOSTILE not in html
    tags = Tags(html)
    assert not [t for t, _ in tags.tags if t in ("script", "img", "iframe")]
    assert not [a for _, a in tags.tags for k in a if k.startswith("on")]
    assert not [a for t, a in tags.tags if t == "a" and "javascript" in a.get("href", "")]
    assert not [a for _, a in tags.tags if "style" in a]  # the CSP allows no inline style
    assert "&lt;script&gt;" in html


def test_what_is_unknown_shows_as_a_dash() -> None:
    template = render.ENVIRONMENT.from_string("{{ a }}|{{ b }}|{{ c }}")
    assert template.render(a=None, b=0, c="") == "—|0|"


def test_autoescape_is_on_for_every_template() -> None:
    """The engine escapes text and attribute syntax; nothing is marked safe by hand."""
    assert render.ENVIRONMENT.autoescape is True
    out = render.ENVIRONMENT.from_string('<p title="{{ v }}">{{ v }}</p>').render(v=HOSTILE)
    escaped = (
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;&gt;&lt;img src=x "
        "onerror=alert(1)&gt;&amp;amp;"
    )
    assert out == f'<p title="{escaped}">{escaped}</p>'
    templates = Path(render.__file__).parent / "templates"
    for template in templates.glob("*.html"):
        text = template.read_text().replace(" ", "")
        assert not re.search(r"\|safe\b", text), template.name
        assert "autoescapefalse" not in text, template.name
        assert "Markup" not in text, template.name


def _hostile_dashboard() -> Dashboard:
    failed = run("failed", error=HOSTILE, minutes_ago=1)
    anomaly = Anomaly(rule=HOSTILE, field="status", message=HOSTILE)
    status = judged(
        facts(
            source="coinpaprika",
            finished_status="failed",
            latest_status="failed",
            last_error=HOSTILE,
            last_failure_at=NOW - timedelta(minutes=1),
        ),
        policy(interval_s=300),
    )
    view = SourceView(
        status=status,
        records=12,
        last_run=failed,
        last_error=HOSTILE,
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
    html = page_html(pages.dashboard_page(_hostile_dashboard()))
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
    assert_inert(page_html(pages.asset_page(view)))
    listing = AssetListPage(
        items=[AssetListItem(id=1, slug=HOSTILE, symbol=HOSTILE, name=HOSTILE, records=3)],
        page=1,
        page_size=50,
        total=1,
        search=HOSTILE,
    )
    assert_inert(page_html(pages.asset_list_page(listing)))
    assert_inert(page_html(pages.error_page(404, HOSTILE)))


def test_pages_refresh_without_javascript_and_link_their_stylesheet() -> None:
    html = page_html(pages.dashboard_page(_hostile_dashboard()))
    assert html.startswith("<!doctype html>")
    assert '<meta http-equiv="refresh" content="30">' in html
    assert '<meta charset="utf-8">' in html
    assert '<link rel="stylesheet" href="/static/dashboard.css">' in html
    for href in ("/health", "/stats", "/runs", "/compare-runs?source=csv", "/assets"):
        assert f'href="{href}"' in html
    listing = AssetListPage(items=[], page=1, page_size=50, total=0)
    assert "refresh" not in page_html(pages.asset_list_page(listing))


def test_status_is_shown_by_word_and_colour() -> None:
    html = page_html(pages.dashboard_page(_hostile_dashboard()))
    pills = Tags(html).find("span", "pill")
    assert pills
    assert all(p["class"] == "pill s-failing" for p in pills)
    assert re.search(r'<span class="pill s-failing" data-status="failing">failing</span>', html)
    css = (render.STATIC_DIR / "dashboard.css").read_text()
    assert ".s-failing{color:var(--bad)" in css
    assert "--bad:#cf222e" in css


def test_the_source_row_shows_the_status_reasons_and_the_data_age() -> None:
    html = page_html(pages.dashboard_page(_hostile_dashboard()))
    row = Tags(html).find("tr")[1]
    assert row["data-status"] == "failing"
    assert "last run failed" in html
    newest = Tags(html).find("span")
    (cell,) = [a for a in newest if a.get("id") == "newest-data-coinpaprika"]
    assert cell["data-value"] == (NOW - timedelta(minutes=1)).isoformat()
    assert cell["data-stale"] == "false"
    assert "stale after 15 min" in html


def test_anomaly_list_links_each_flagged_run_to_its_comparison() -> None:
    previous = run(minutes_ago=2)
    flagged = run("failed", minutes_ago=1, error="boom")
    rules = (
        Anomaly(rule="success_to_failure", field="status", message="run_b failed: boom"),
        Anomaly(rule="schema_drift", field="drift_events", message="2 drift events"),
    )
    view = _hostile_dashboard()
    timelines = {"coinpaprika": (TimelineRun(previous), TimelineRun(flagged, rules, previous.id))}
    html = page_html(
        pages.dashboard_page(
            Dashboard(
                now=NOW,
                overall="failing",
                sources=view.sources,
                timelines=timelines,
                records_total=0,
            )
        )
    )
    assert f'href="/compare-runs?run_a={previous.id}&amp;run_b={flagged.id}"' in html
    assert "<code>schema_drift</code>" in html
    empty = page_html(
        pages.dashboard_page(
            Dashboard(now=NOW, overall="healthy", sources=(), timelines={}, records_total=0)
        )
    )
    assert not Tags(empty).find("svg", "timeline")  # no sources, no charts
