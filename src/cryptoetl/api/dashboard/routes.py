"""The operator dashboard's pages: server-rendered HTML over the API's read-only database.

* ``GET /`` — one row per source: its status by the rules of :mod:`cryptoetl.api.status` (the
  ones ``/health`` and ``/metrics`` use) with every reason, last success, last failure and its
  reason, the upstream time of its newest data and its freshness threshold, records in the
  table, records in the last run, the next scheduled run, and the drift events and rejects of
  the last successful run and the runs after it; then a timeline of each source's last
  :data:`~cryptoetl.api.dashboard.charts.TIMELINE_SLOTS` runs (duration and records as bars,
  coloured by status) with every run judged by :mod:`cryptoetl.api.anomalies` against the
  history ``/compare-runs`` uses. Anomalies are flagged beside the status, never change it.
* ``GET /ui/assets`` — the assets, searchable, 50 to a page.
* ``GET /ui/assets/{id or slug}`` — one asset: identity, mapping per source, a price chart per
  quote currency (the buckets ``GET /assets/{id}/prices`` returns, computed in SQL), the spread
  between sources now and the latest news that mention it.

Every figure has a JSON twin, linked from the page. Errors are HTML pages with the API's
status and message (a 503 page refreshes itself until the database is back).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import Parameter
from litestar.response import Template

from cryptoetl.api import assets as assets_api
from cryptoetl.api import params
from cryptoetl.api.dashboard import pages, queries
from cryptoetl.api.dashboard.views import AssetListPage
from cryptoetl.api.deps import Database
from cryptoetl.api.errors import ApiError, DatabaseUnavailable
from cryptoetl.api.params import ParamErrors
from cryptoetl.config import Settings

log = logging.getLogger("cryptoetl.api")

LIST_PAGE_SIZE = 50
MAX_DAYS = 36_500

# The page is inert markup: no script may run even if escaping were ever missed, and styles
# come only from our own stylesheet.
HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _answer(page: pages.Page) -> Template:
    return Template(
        page.template, context=page.context, status_code=page.status_code, headers=HTML_HEADERS
    )


def _error(request: Request[Any, Any, Any], exc: ApiError) -> Template:
    """An API error as an HTML page (a 503 page refreshes itself until the database is back)."""
    message = exc.message
    if exc.detail:
        message += ": " + "; ".join(f"{d.parameter} {d.message}" for d in exc.detail)
    unavailable = isinstance(exc, DatabaseUnavailable)
    if unavailable:
        log.warning(
            "database unavailable",
            extra={"event": "database_unavailable", "path": request.url.path},
        )
    refresh = queries.REFRESH_S if unavailable else None
    return _answer(pages.error_page(exc.status_code, message, refresh_s=refresh))


@get("/", include_in_schema=False)
async def dashboard(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    settings: NamedDependency[Settings],
) -> Template:
    """The pipeline at a glance (HTML)."""
    now = datetime.now(UTC)
    try:
        errors = ParamErrors()
        params.reject_unknown(request, (), errors)
        errors.raise_if_any()
        async with db.connection() as conn:
            view = await queries.dashboard(conn, settings, now)
    except ApiError as exc:
        return _error(request, exc)
    return _answer(pages.dashboard_page(view))


@get("/ui/assets", include_in_schema=False)
async def asset_list(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    page: Annotated[str | None, Parameter(description="Page number")] = None,
    search: Annotated[str | None, Parameter(description="Name, slug or symbol")] = None,
) -> Template:
    """The assets, 50 to a page, searchable by name, slug or symbol (HTML)."""
    try:
        errors = ParamErrors()
        params.reject_unknown(request, ("page", "search"), errors)
        page_n = errors.integer("page", page, 1, 1, assets_api.MAX_PAGE)
        text = errors.text("search", search, 100)
        errors.raise_if_any()
        async with db.connection() as conn:
            offset = (page_n - 1) * LIST_PAGE_SIZE
            total, items = await assets_api.asset_page(conn, None, text, LIST_PAGE_SIZE, offset)
    except ApiError as exc:
        return _error(request, exc)
    view = AssetListPage(items, page_n, LIST_PAGE_SIZE, total, text, datetime.now(UTC))
    return _answer(pages.asset_list_page(view))


@get("/ui/assets/{asset_id:str}", include_in_schema=False)
async def asset_detail(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    asset_id: Annotated[str, Parameter(description="Asset id or slug")],
    days: Annotated[str | None, Parameter(description="Only the last N days")] = None,
) -> Template:
    """One asset: identity, mappings, price chart, spread, news (HTML)."""
    now = datetime.now(UTC)
    try:
        errors = ParamErrors()
        params.reject_unknown(request, ("days",), errors)
        window = errors.integer("days", days, 0, 1, MAX_DAYS) or None
        errors.raise_if_any()
        async with db.connection() as conn:
            view = await queries.asset_page(conn, asset_id, window, now)
    except ApiError as exc:
        return _error(request, exc)
    return _answer(pages.asset_page(view))


ROUTES = [dashboard, asset_list, asset_detail]
