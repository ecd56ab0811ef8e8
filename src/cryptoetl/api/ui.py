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
CSV price history is downsampled in SQL: the asset's time range is cut into at most
:data:`~cryptoetl.api.ui_render.MAX_CHART_POINTS` equal buckets and each bucket's newest
observation is one probe of ``ix_records_asset_ts_id``; the API sources' history is read from
their raw tables (the newest :data:`RAW_HISTORY_LIMIT` payloads of the coin, found through the
``(source_key, content_hash)`` index), then thinned to the same number of points.

Every figure has a JSON twin, linked from the page: ``/health``, ``/stats``, ``/runs``,
``/compare-runs``, ``/assets``, ``/assets/{id}`` and ``/data``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import Parameter

from cryptoetl.api import assets as assets_api
from cryptoetl.api.deps import Database
from cryptoetl.api.errors import ApiError, DatabaseUnavailable, NotFound, ParamErrors
from cryptoetl.api.runs import BASELINE_RUNS, RUN_COLUMNS, anomalies, run_item
from cryptoetl.api.schemas import (
    AssetListItem,
    AssetRef,
    NewsItem,
    RunItem,
    SourcePrice,
)
from cryptoetl.api.ui_render import (
    MAX_CHART_POINTS,
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
    thin,
)
from cryptoetl.config import SOURCE_TYPES, Settings

log = logging.getLogger("cryptoetl.api")

REFRESH_S = 30
SINCE_RUNS = 100  # drift/rejects "since the last success" sum at most this many runs
TOP_ASSETS = 10
LIST_PAGE_SIZE = 50
RAW_HISTORY_LIMIT = 2000  # newest raw payloads of one coin read for its price history
MAX_IDS_PER_SOURCE = 3  # coins of one source mapped to the asset whose raw history is read
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
_RECORDS = "SELECT source_type, sum(n)::bigint FROM record_counts GROUP BY source_type"
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
FROM (SELECT asset_id, sum(n)::bigint AS n FROM record_counts
      WHERE asset_id <> 0 AND kind = 'market' GROUP BY asset_id
      ORDER BY n DESC, asset_id LIMIT $1::int) c
JOIN assets a ON a.id = c.asset_id
ORDER BY c.n DESC, a.id"""

# --- SQL: asset page --------------------------------------------------------------------------

_ASSET_COUNTS = """SELECT source_type, sum(n)::bigint FROM record_counts
WHERE source_type = ANY($2::text[]) AND kind = 'market' AND asset_id = $1::bigint
GROUP BY source_type"""
_CSV_BOUNDS = """SELECT
 (SELECT source_timestamp FROM records
  WHERE asset_id = $1::bigint AND source_type = 'csv' AND kind = 'market'
    AND price_usd IS NOT NULL AND source_timestamp >= coalesce($2::timestamptz, '-infinity')
  ORDER BY source_timestamp, id LIMIT 1),
 (SELECT source_timestamp FROM records
  WHERE asset_id = $1::bigint AND source_type = 'csv' AND kind = 'market'
    AND price_usd IS NOT NULL AND source_timestamp >= coalesce($2::timestamptz, '-infinity')
  ORDER BY source_timestamp DESC, id DESC LIMIT 1)"""
# One index probe per bucket [lo, hi): its newest observation.
_CSV_SERIES = """SELECT p.source_timestamp, p.price_usd
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(lo, hi, i)
CROSS JOIN LATERAL (
    SELECT r.source_timestamp, r.price_usd FROM records r
    WHERE r.asset_id = $1::bigint AND r.source_type = 'csv' AND r.kind = 'market'
      AND r.price_usd IS NOT NULL AND r.source_timestamp >= b.lo AND r.source_timestamp < b.hi
    ORDER BY r.source_timestamp DESC, r.id DESC LIMIT 1
) p
ORDER BY b.i"""
# The coin's versions through the (source_key, content_hash) index, newest RAW_HISTORY_LIMIT
# kept. MATERIALIZED pins that plan: a generic plan may otherwise walk the primary key backwards
# over every coin's rows. Only the extracted fields are sorted, never whole payloads, and they
# leave as text, parsed in Python: a hostile payload cannot fail a cast in SQL.
_RAW_HISTORY = {
    source: f"""WITH h AS MATERIALIZED (
    SELECT id, fetched_at, payload->>'last_updated' AS stamp, {price} AS price
    FROM {table} WHERE source_key = $1::text)
SELECT fetched_at, stamp, price FROM h ORDER BY id DESC LIMIT $2::int"""
    for source, table, price in (
        ("coingecko", "raw_coingecko_markets", "payload->>'current_price'"),
        ("coinpaprika", "raw_coinpaprika_tickers", "payload->'quotes'->'USD'->>'price'"),
    )
}
_RAW_TABLE_NAMES = {"coingecko": "raw_coingecko_markets", "coinpaprika": "raw_coinpaprika_tickers"}


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
            records = {str(s): int(n) for s, n in await conn.fetch(_RECORDS)}
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


def bucket_edges(
    lo: datetime, hi: datetime, buckets: int = MAX_CHART_POINTS
) -> tuple[list[datetime], list[datetime]]:
    """``buckets`` equal half-open intervals covering [lo, hi] (the last one ends just past
    hi), as (starts, ends); a single instant is one bucket."""
    end = hi + timedelta(microseconds=1)
    if hi <= lo:
        return [lo], [end]
    span = end - lo
    edges = [lo + span * (i / buckets) for i in range(buckets)] + [end]
    return edges[:-1], edges[1:]


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def _csv_series(conn: Any, asset_id: int, since: datetime | None) -> Series | None:
    lo, hi = await conn.fetchrow(_CSV_BOUNDS, asset_id, since)
    if lo is None:
        return None
    starts, ends = bucket_edges(lo, hi)
    rows = await conn.fetch(_CSV_SERIES, asset_id, starts, ends)
    points = tuple((r[0], float(r[1])) for r in rows)
    return Series("csv", points, "CSV history (records), downsampled in SQL")


async def _api_series(
    conn: Any,
    source: str,
    source_ids: Sequence[str],
    latest: SourcePrice | None,
    since: datetime | None,
) -> Series | None:
    points: list[tuple[datetime, float]] = []
    for source_id in source_ids[:MAX_IDS_PER_SOURCE]:
        for fetched_at, stamp, price in await conn.fetch(
            _RAW_HISTORY[source], source_id, RAW_HISTORY_LIMIT
        ):
            value = _number(price)
            if value is not None:
                points.append((_instant(stamp) or fetched_at, value))
    raw_points = len(points)
    if latest is not None and latest.price_usd is not None:
        points.append((latest.source_timestamp, latest.price_usd))
    if since is not None:
        points = [p for p in points if p[0] >= since]
    if not points:
        return None
    origin = (
        f"payload history ({_RAW_TABLE_NAMES[source]}) + latest snapshot"
        if raw_points
        else "latest snapshot"
    )
    return Series(source, tuple(thin(points, MAX_CHART_POINTS)), origin)


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
            if found is None:
                raise NotFound(f"no asset with id or slug {asset_id[:100]!r}")
            key = found["id"]
            mappings = await conn.fetch(assets_api.MAPPINGS_SQL, key)
            prices = [
                SourcePrice(**dict(r))
                for r in await conn.fetch(assets_api.PRICES_SQL, key, assets_api.MARKET_SOURCES)
            ]
            news = await conn.fetch(assets_api.NEWS_SQL, key, assets_api.NEWS_LIMIT)
            counts = {
                str(s): int(n)
                for s, n in await conn.fetch(_ASSET_COUNTS, key, assets_api.MARKET_SOURCES)
            }
            series: list[Series] = []
            for source in assets_api.MARKET_SOURCES:
                if source == "csv":
                    found_series = await _csv_series(conn, key, since)
                else:
                    ids = [m[1] for m in mappings if m[0] == source]
                    latest = next((p for p in prices if p.source_type == source), None)
                    found_series = await _api_series(conn, source, ids, latest, since)
                if found_series is not None:
                    series.append(found_series)
    except ApiError as exc:
        return _error(request, exc)
    view = AssetPage(
        now=now,
        asset=AssetRef(**dict(found)),
        mappings=assets_api.mapping_items(mappings),
        prices=prices,
        spread_pct=assets_api.spread_pct(prices),
        news=[NewsItem(**dict(n)) for n in news],
        series=series,
        record_counts=counts,
        days=window,
        refresh_s=REFRESH_S,
    )
    return _html(asset_page(view))


ROUTES = [dashboard, asset_list, asset_detail]
