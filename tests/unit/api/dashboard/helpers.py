"""Builders for the dashboard's unit tests: runs, statuses and pages, and a tag parser."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from cryptoetl.api.dashboard import charts, pages, render
from cryptoetl.api.dashboard.views import Series, TimelineRun
from cryptoetl.api.schemas import RunItem
from cryptoetl.api.status import Policy, SourceFacts, SourceStatus, judge

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;"


def run(
    status: str = "success",
    *,
    source: str = "coingecko",
    minutes_ago: float = 10,
    duration: float | None = 2.0,
    processed: int = 100,
    inserted: int | None = None,
    error: str | None = None,
    drift: int = 0,
    rejected: int = 0,
) -> RunItem:
    """A run; ``inserted`` defaults to ``processed`` (a productive run)."""
    started = NOW - timedelta(minutes=minutes_ago)
    return RunItem(
        id=str(uuid.uuid4()),
        source_type=source,
        status=status,
        worker_id="w",
        started_at=started,
        finished_at=None if duration is None else started + timedelta(seconds=duration),
        duration_s=duration,
        processed=processed,
        inserted=processed if inserted is None else inserted,
        updated=0,
        unchanged=0,
        rejected=rejected,
        drift_events=drift,
        raw_stored=0,
        warnings=[],
        error=error,
    )


def policy(**overrides: Any) -> Policy:
    values: dict[str, Any] = {
        "enabled": True,
        "interval_s": 60,
        "stale_after_s": 3600,
        "freshness_s": 900,
    }
    values.update(overrides)
    return Policy(**values)


def facts(**overrides: Any) -> SourceFacts:
    """A healthy source: its last run succeeded a minute ago, its data is a minute old."""
    last = NOW - timedelta(minutes=1)
    values: dict[str, Any] = {
        "source": "coingecko",
        "checkpoint_status": "success",
        "last_success_at": last,
        "latest_id": "run-1",
        "latest_status": "success",
        "latest_started_at": last - timedelta(seconds=2),
        "latest_finished_at": last,
        "finished_status": "success",
        "finished_started_at": last - timedelta(seconds=2),
        "finished_finished_at": last,
        "newest_data_at": last,
    }
    values.update(overrides)
    return SourceFacts(**values)


def judged(facts_: SourceFacts | None = None, policy_: Policy | None = None) -> SourceStatus:
    return judge(facts_ or facts(), policy_ or policy(), NOW)


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


def page_html(page: pages.Page) -> str:
    return render.render(page.template, **page.context)


def timeline_svg(source: str, items: Sequence[TimelineRun]) -> str:
    return render.render_macro("charts.html", "timeline_svg", charts.timeline(source, items))


def price_svg(series: Sequence[Series], width: float = 1180, height: float = 360) -> str:
    chart = charts.price_chart(series, width=width, height=height)
    return render.render_macro("charts.html", "price_chart_svg", chart)
