"""What the dashboard's pages read, bounded at any table size: every statement has a LIMIT or is
a fixed number of index probes (``sql/dashboard.sql`` and the shared runs, assets and status
statements). Source statuses come from :mod:`cryptoetl.api.status`, run anomalies from
:mod:`cryptoetl.api.anomalies`: the same rules as ``/health`` and ``/compare-runs``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptoetl.api import anomalies, status
from cryptoetl.api import assets as assets_api
from cryptoetl.api.dashboard.charts import TIMELINE_SLOTS
from cryptoetl.api.dashboard.views import (
    AssetPage,
    Dashboard,
    Series,
    SourceView,
    TimelineRun,
    TopAsset,
    series_label,
)
from cryptoetl.api.prices import PriceQuery, price_history
from cryptoetl.api.queries import load
from cryptoetl.api.runs import RECENT_OF_SOURCE, SUCCESSES_BEFORE, run_item
from cryptoetl.api.schemas import AssetRef, NewsItem, PriceSeries, RunItem
from cryptoetl.api.stats import records_per_source
from cryptoetl.config import Settings

REFRESH_S = 30
SINCE_RUNS = 100  # drift/rejects "since the last success" sum at most this many runs
TOP_ASSETS = 10

_SQL = load("dashboard")
_LAST_SUCCESS_START = _SQL["last_success_start"]
_SINCE = _SQL["since_success"]
_FAILURE_REASON = _SQL["failure_reason"]
_TOP_ASSETS = _SQL["top_assets"]
_OBSERVATIONS_BY_SOURCE = load("assets")["observations_by_source"]


def judge_runs(rows: Sequence[RunItem], older_successes: Sequence[RunItem]) -> list[TimelineRun]:
    """Each run of ``rows`` (newest first; one more than is shown) judged the way
    ``/compare-runs`` judges ``run_b``: against the previous finished run (``run_a``) and the
    successful runs that started before it. ``older_successes`` continues the history past the
    oldest row. Returns the shown runs, oldest first."""
    history = [*rows, *older_successes]
    judged = []
    for i, b in enumerate(rows[:TIMELINE_SLOTS]):
        if b.status == "running":  # partial counts: nothing to judge yet
            judged.append(TimelineRun(b))
            continue
        a = next((r for r in rows[i + 1 :] if r.status != "running"), None)
        found = anomalies.judge(a, b, history[i + 1 :]).anomalies
        judged.append(TimelineRun(b, tuple(found), a.id if a else None))
    return judged[::-1]


async def _timeline(conn: Any, source: str) -> tuple[list[RunItem], list[TimelineRun]]:
    rows = [run_item(r) for r in await conn.fetch(RECENT_OF_SOURCE, source, TIMELINE_SLOTS + 1)]
    older: list[RunItem] = []
    if len(rows) > TIMELINE_SLOTS:  # the history goes on past the rows read
        before = await conn.fetch(
            SUCCESSES_BEFORE, source, rows[-1].started_at, anomalies.HISTORY_RUNS
        )
        older = [run_item(r) for r in before]
    return rows, judge_runs(rows, older)


async def _source_view(
    conn: Any, judged: status.SourceStatus, records: int
) -> tuple[SourceView, list[TimelineRun]]:
    source, facts = judged.source, judged.facts
    rows, timeline = await _timeline(conn, source)
    last_ok_start = await conn.fetchval(_LAST_SUCCESS_START, source)
    drift, rejects, counted = await conn.fetchrow(_SINCE, source, last_ok_start, SINCE_RUNS)
    error = facts.last_error
    if error is None and facts.last_failure_at is not None:
        error = await conn.fetchval(_FAILURE_REASON, source, facts.last_failure_at)
    latest_judged = next((t for t in reversed(timeline) if t.run.status != "running"), None)
    view = SourceView(
        status=judged,
        records=records,
        last_run=rows[0] if rows else None,
        last_error=error,
        drift_since=int(drift),
        rejects_since=int(rejects),
        runs_since=int(counted),
        latest_anomalies=latest_judged.anomalies if latest_judged else (),
    )
    return view, timeline


async def dashboard(conn: Any, settings: Settings, now: datetime) -> Dashboard:
    """Every source's row and timeline, and the assets with the most records."""
    records = await records_per_source(conn)
    views, timelines = [], {}
    for judged in await status.load(conn, settings, now):
        view, timeline = await _source_view(conn, judged, records.get(judged.source, 0))
        views.append(view)
        timelines[judged.source] = tuple(timeline)
    top = [TopAsset(*r) for r in await conn.fetch(_TOP_ASSETS, TOP_ASSETS)]
    return Dashboard(
        now=now,
        overall=status.overall(v.status for v in views),
        sources=tuple(views),
        timelines=timelines,
        records_total=sum(records.values()),
        top_assets=tuple(top),
        refresh_s=REFRESH_S,
        stale_after_s=settings.stale_after_s,
    )


def chart_series(history: Sequence[PriceSeries]) -> list[Series]:
    """Each series' bucket closes as a chart line, labelled with its key."""
    lines = []
    for h in history:
        points = tuple((b.start, b.close) for b in h.buckets if b.close is not None)
        if points:
            origin = f"{len(points)} bucket(s) of {h.bucket}"
            lines.append(
                Series(h.source_type, points, origin, series_label(h.series), h.series.quote)
            )
    return lines


async def asset_page(conn: Any, asset_ref: str, days: int | None, now: datetime) -> AssetPage:
    """One asset: identity, mappings, latest prices and spread, price history, news."""
    found = await assets_api.find_asset(conn, asset_ref)
    key = found["id"]
    mappings = await conn.fetch(assets_api.MAPPINGS_SQL, key)
    prices = assets_api.latest_prices(
        await conn.fetch(assets_api.PRICES_SQL, key, assets_api.MAX_PRICES)
    )
    news = await conn.fetch(assets_api.NEWS_SQL, key, assets_api.NEWS_LIMIT)
    counts = {str(s): int(n) for s, n in await conn.fetch(_OBSERVATIONS_BY_SOURCE, key)}
    since = now - timedelta(days=days) if days else None
    history = await price_history(conn, key, PriceQuery(since=since))
    return AssetPage(
        now=now,
        asset=AssetRef(**dict(found)),
        mappings=assets_api.mapping_items(mappings),
        prices=prices,
        spread_pct=assets_api.spread_pct(prices),
        news=[NewsItem(**dict(n)) for n in news],
        series=chart_series(history),
        record_counts=counts,
        days=days,
        refresh_s=REFRESH_S,
    )
