"""The operator dashboard: server-rendered HTML pages over the API's read-only database.

* ``GET /`` — one row per source: status (healthy / degraded / failing, or disabled), last
  success, last failure and its reason, records in the table, records in the last run, the next
  scheduled run (last run's ``finished_at`` + the source's interval) and the drift events and
  rejects of the last successful run and the runs after it; then a timeline of each source's
  last :data:`~cryptoetl.api.ui_render.TIMELINE_SLOTS` runs (duration and records as bars,
  coloured by status) with every run judged by the anomaly rules of :mod:`cryptoetl.api.runs`
  (imported, not re-implemented) against the same baseline ``/compare-runs`` uses.
* ``GET /ui/assets`` — the assets, searchable, 50 to a page.
* ``GET /ui/assets/{id or slug}`` — one asset: identity, mapping per source, a price chart per
  source, the spread between sources now and the latest news that mention it.

Status rules (per enabled source): **failing** when its last finished run failed;
**degraded** when it never ran or never succeeded, its last run was interrupted, its last
success is older than ``STALE_AFTER_S`` (the ``/health`` rule), or its next run is overdue by
more than one interval (no worker running?); **healthy** otherwise. Anomaly flags are shown
next to the status but do not change it: the ``processed`` rules also fire on healthy
incremental runs that find nothing new.

Bounded at any table size: every query has a LIMIT or is a fixed number of index probes. The
price chart draws the closes of the buckets ``GET /assets/{id}/prices`` returns (at most
:data:`~cryptoetl.api.prices.MAX_BUCKETS` per series, computed in SQL on each series' index),
one chart per quote currency: prices in different units never share an axis.

Every figure has a JSON twin, linked from the page: ``/health``, ``/stats``, ``/runs``,
``/compare-runs``, ``/assets``, ``/assets/{id}`` and ``/data``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import Parameter

from cryptoetl.api import assets as assets_api
from cryptoetl.api.deps import Database
from cryptoetl.api.errors import ApiError, DatabaseUnavailable, ParamErrors
from cryptoetl.api.prices import PriceQuery, price_history
from cryptoetl.api.queries import RECORDS_BY_SOURCE
from cryptoetl.api.runs import BASELINE_RUNS, RUN_COLUMNS, anomalies, run_item
from cryptoetl.api.schemas import (
    AssetListItem,
    AssetRef,
    NewsItem,
    PriceSeries,
    RunItem,
)
from cryptoetl.api.ui_render import (
    TIMELINE_SLOTS,
    AssetListPage,
    AssetPage,
    Dashboard,
    Series,
    SourceView,
    TimelineRun,
    TopAsset,
    asset_list_page,
    asset_page,
    dashboard_page,
    error_page,
    fmt_duration,
    series_label,
)
from cryptoetl.config import SOURCE_TYPES, Settings

log = logging.getLogger("cryptoetl.api")

REFRESH_S = 30
SINCE_RUNS = 100  # drift/rejects "since the last success" sum at most this many runs
TOP_ASSETS = 10
LIST_PAGE_SIZE = 50
MAX_DAYS = 36_500

# The page is inert markup: no script may run even if escaping were ever missed.
HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# --- SQL: dashboard ---------------------------------------------------------------------------

_CHECKPOINTS = (
    "SELECT source_type, status, last_success_at, last_failure_at, last_error FROM checkpoints"
)
# ix_runs_source_started serves each of these.
_RUNS_OF = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE source_type = $1::text "
    "ORDER BY started_at DESC, id LIMIT $2::int"
)
_SUCCESSES_BEFORE = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE source_type = $1::text AND status = 'success' "
    "AND started_at < $2::timestamptz ORDER BY started_at DESC, id LIMIT $3::int"
)
_LAST_SUCCESS_START = (
    "SELECT started_at FROM runs WHERE source_type = $1::text AND status = 'success' "
    "ORDER BY started_at DESC LIMIT 1"
)
_SINCE = """SELECT coalesce(sum(drift_events), 0)::bigint, coalesce(sum(rejected), 0)::bigint,
    count(*)
FROM (SELECT drift_events, rejected FROM runs
      WHERE source_type = $1::text AND started_at >= coalesce($2::timestamptz, '-infinity')
      ORDER BY started_at DESC LIMIT $3::int) r"""
# The error of the failed run behind checkpoints.last_failure_at (a success clears last_error):
# the scan starts at that instant and the failed run is the first it meets.
_FAILURE_REASON = (
    "SELECT error FROM runs WHERE source_type = $1::text AND status = 'failed' "
    "AND started_at <= $2::timestamptz ORDER BY started_at DESC LIMIT 1"
)
_TOP_ASSETS = """SELECT a.id, a.symbol, a.name, c.n
FROM (SELECT asset_id, sum(observations)::bigint AS n FROM market_series
      GROUP BY asset_id ORDER BY n DESC, asset_id LIMIT $1::int) c
JOIN assets a ON a.id = c.asset_id
ORDER BY c.n DESC, a.id"""

# --- SQL: asset page --------------------------------------------------------------------------

_ASSET_COUNTS = """SELECT source_type, sum(observations)::bigint FROM market_series
WHERE asset_id = $1::bigint GROUP BY source_type"""


# --- responses --------------------------------------------------------------------------------


def _html(content: str, status: int = 200) -> Response[str]:
    return Response(content, status_code=status, media_type=MediaType.HTML, headers=HTML_HEADERS)


def _error(request: Request[Any, Any, Any], exc: ApiError) -> Response[str]:
    """An API error as an HTML page (a 503 page refreshes itself until the database is back)."""
    message = exc.message
    if exc.detail:
        message += ": " + "; ".join(f"{d.parameter} {d.message}" for d in exc.detail)
    if isinstance(exc, DatabaseUnavailable):
        log.warning(
            "database unavailable",
            extra={"event": "database_unavailable", "path": request.url.path},
        )
    refresh = REFRESH_S if isinstance(exc, DatabaseUnavailable) else None
    return _html(error_page(exc.status_code, message, refresh_s=refresh), exc.status_code)


# --- dashboard --------------------------------------------------------------------------------


def judge_runs(rows: Sequence[RunItem], older_successes: Sequence[RunItem]) -> list[TimelineRun]:
    """Each run of ``rows`` (newest first; one more than is shown) judged the way
    ``/compare-runs`` judges ``run_b``: against the previous finished run (``run_a``) and the
    last :data:`BASELINE_RUNS` successful runs that started before it. ``older_successes``
    continues the history past the oldest row. Returns the shown runs, oldest first."""
    history = [*rows, *older_successes]
    shown = list(rows[:TIMELINE_SLOTS])
    judged = []
    for i, b in enumerate(shown):
        if b.status == "running":  # partial counts: nothing to judge yet
            judged.append(TimelineRun(b))
            continue
        a = next((r for r in rows[i + 1 :] if r.status != "running"), None)
        baseline = [
            r for r in history[i + 1 :] if r.status == "success" and r.started_at < b.started_at
        ][:BASELINE_RUNS]
        processed = [r.processed for r in baseline]
        durations = [r.duration_s for r in baseline if r.duration_s is not None]
        # Without a previous run, b stands in for run_a: only the status rule needs run_a, and
        # it cannot fire against b itself.
        found = anomalies(a or b, b, processed, durations)
        judged.append(TimelineRun(b, tuple(found), a.id if a else None))
    return judged[::-1]


def classify(
    *,
    enabled: bool,
    last_finished: RunItem | None,
    latest: RunItem | None,
    last_success_at: datetime | None,
    next_run_at: datetime | None,
    interval_s: int,
    stale_after_s: int,
    now: datetime,
) -> tuple[str, list[str]]:
    """A source's status and the reasons for it (see the module docstring)."""
    if not enabled:
        return "disabled", ["not in ENABLED_SOURCES"]
    if latest is None:
        return "degraded", ["never ran"]
    reasons = []
    failing = last_finished is not None and last_finished.status == "failed"
    if failing:
        reasons.append("last run failed")
    elif last_finished is not None and last_finished.status == "interrupted":
        reasons.append("last run interrupted")
    if last_success_at is None:
        reasons.append("no successful run yet")
    elif (now - last_success_at).total_seconds() > stale_after_s:
        reasons.append(f"no success for {fmt_duration((now - last_success_at).total_seconds())}")
    if latest.status != "running" and next_run_at is not None:
        late = (now - next_run_at).total_seconds()
        if late > interval_s:
            reasons.append(f"next run overdue by {fmt_duration(late)}")
    if failing:
        return "failing", reasons
    return ("degraded" if reasons else "healthy"), reasons


async def _source_view(
    conn: Any,
    settings: Settings,
    source: str,
    checkpoint: Any,
    records: int,
    now: datetime,
) -> tuple[SourceView, list[TimelineRun]]:
    rows = [run_item(r) for r in await conn.fetch(_RUNS_OF, source, TIMELINE_SLOTS + 1)]
    older: list[RunItem] = []
    if len(rows) > TIMELINE_SLOTS:
        older = [
            run_item(r)
            for r in await conn.fetch(_SUCCESSES_BEFORE, source, rows[-1].started_at, BASELINE_RUNS)
        ]
    timeline = judge_runs(rows, older)
    last_ok_start = await conn.fetchval(_LAST_SUCCESS_START, source)
    drift, rejects, counted = await conn.fetchrow(_SINCE, source, last_ok_start, SINCE_RUNS)

    last_success = checkpoint["last_success_at"] if checkpoint else None
    last_failure = checkpoint["last_failure_at"] if checkpoint else None
    error = checkpoint["last_error"] if checkpoint else None
    if error is None and last_failure is not None:
        error = await conn.fetchval(_FAILURE_REASON, source, last_failure)

    latest = rows[0] if rows else None
    last_finished = next((r for r in rows if r.status != "running"), None)
    interval = settings.interval_for(source)
    next_run = (
        latest.finished_at + timedelta(seconds=interval)
        if latest is not None and latest.finished_at is not None
        else None
    )
    status, reasons = classify(
        enabled=source in settings.enabled_sources,
        last_finished=last_finished,
        latest=latest,
        last_success_at=last_success,
        next_run_at=next_run,
        interval_s=interval,
        stale_after_s=settings.stale_after_s,
        now=now,
    )
    latest_judged = next((t for t in reversed(timeline) if t.run.status != "running"), None)
    view = SourceView(
        source=source,
        status=status,
        reasons=tuple(reasons),
        last_success_at=last_success,
        last_failure_at=last_failure,
        last_error=error,
        records=records,
        last_run=latest,
        next_run_at=next_run,
        interval_s=interval,
        drift_since=int(drift),
        rejects_since=int(rejects),
        runs_since=int(counted),
        latest_anomalies=latest_judged.anomalies if latest_judged else (),
    )
    return view, timeline


def overall_status(views: Sequence[SourceView]) -> str:
    statuses = {v.status for v in views}
    for status in ("failing", "degraded"):
        if status in statuses:
            return status
    return "healthy"


@get("/", include_in_schema=False)
async def dashboard(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
) -> Response[str]:
    """The pipeline at a glance (HTML)."""
    now = datetime.now(UTC)
    try:
        async with db.connection() as conn:
            checkpoints = {r["source_type"]: r for r in await conn.fetch(_CHECKPOINTS)}
            records: dict[str, int] = {}
            for source, _, n in await conn.fetch(RECORDS_BY_SOURCE):
                records[source] = records.get(source, 0) + int(n)
            views, timelines = [], {}
            for source in SOURCE_TYPES:
                view, timeline = await _source_view(
                    conn, settings, source, checkpoints.get(source), records.get(source, 0), now
                )
                views.append(view)
                timelines[source] = tuple(timeline)
            top = [TopAsset(*r) for r in await conn.fetch(_TOP_ASSETS, TOP_ASSETS)]
    except ApiError as exc:
        return _error(request, exc)
    page = Dashboard(
        now=now,
        overall=overall_status(views),
        sources=tuple(views),
        timelines=timelines,
        records_total=sum(records.values()),
        top_assets=tuple(top),
        refresh_s=REFRESH_S,
        stale_after_s=settings.stale_after_s,
    )
    return _html(dashboard_page(page))


# --- assets -----------------------------------------------------------------------------------


@get("/ui/assets", include_in_schema=False)
async def asset_list(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    page: Annotated[str | None, Parameter(description="Page number")] = None,
    search: Annotated[str | None, Parameter(description="Name, slug or symbol")] = None,
) -> Response[str]:
    """The assets, 50 to a page, searchable by name, slug or symbol (HTML)."""
    try:
        errors = ParamErrors()
        page_n = errors.integer("page", page, 1, 1, 10**6)
        text = errors.text("search", search, 100)
        errors.raise_if_any()
        pattern = assets_api.like_pattern(text) if text else None
        async with db.connection() as conn:
            total = int(await conn.fetchval(assets_api.COUNT_SQL, None, pattern))
            rows = await conn.fetch(
                assets_api.LIST_SQL, None, pattern, LIST_PAGE_SIZE, (page_n - 1) * LIST_PAGE_SIZE
            )
    except ApiError as exc:
        return _error(request, exc)
    items = [AssetListItem(id=r[0], slug=r[1], symbol=r[2], name=r[3], records=r[4]) for r in rows]
    view = AssetListPage(
        items=items,
        page=page_n,
        page_size=LIST_PAGE_SIZE,
        total=total,
        search=text,
        now=datetime.now(UTC),
    )
    return _html(asset_list_page(view))


def chart_series(history: Sequence[PriceSeries]) -> list[Series]:
    """Each series' bucket closes as a chart line, labelled with its key."""
    lines = []
    for h in history:
        points = tuple((b.start, b.close) for b in h.buckets if b.close is not None)
        if points:
            ref = h.series
            label = series_label(ref)
            origin = f"{len(points)} bucket(s) of {h.bucket}"
            lines.append(Series(h.source_type, points, origin, label, ref.quote))
    return lines


@get("/ui/assets/{asset_id:str}", include_in_schema=False)
async def asset_detail(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    asset_id: Annotated[str, Parameter(description="Asset id or slug")],
    days: Annotated[str | None, Parameter(description="Only the last N days")] = None,
) -> Response[str]:
    """One asset: identity, mappings, price chart, spread, news (HTML)."""
    now = datetime.now(UTC)
    try:
        errors = ParamErrors()
        window = errors.integer("days", days, 0, 1, MAX_DAYS) or None
        errors.raise_if_any()
        since = now - timedelta(days=window) if window else None
        async with db.connection() as conn:
            found = await assets_api.find_asset(conn, asset_id)
            key = found["id"]
            mappings = await conn.fetch(assets_api.MAPPINGS_SQL, key)
            prices = assets_api.latest_prices(
                await conn.fetch(assets_api.PRICES_SQL, key, assets_api.MAX_PRICES)
            )
            news = await conn.fetch(assets_api.NEWS_SQL, key, assets_api.NEWS_LIMIT)
            counts = {str(s): int(n) for s, n in await conn.fetch(_ASSET_COUNTS, key)}
            history = await price_history(conn, key, PriceQuery(since=since))
    except ApiError as exc:
        return _error(request, exc)
    view = AssetPage(
        now=now,
        asset=AssetRef(**dict(found)),
        mappings=assets_api.mapping_items(mappings),
        prices=prices,
        spread_pct=assets_api.spread_pct(prices),
        news=[NewsItem(**dict(n)) for n in news],
        series=chart_series(history),
        record_counts=counts,
        days=window,
        refresh_s=REFRESH_S,
    )
    return _html(asset_page(view))


ROUTES = [dashboard, asset_list, asset_detail]
