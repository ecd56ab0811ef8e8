"""Each page as a template name and its context: the routes answer them through Litestar's
template engine, tests render them with :func:`cryptoetl.api.dashboard.render.render`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from cryptoetl.api.dashboard.views import AssetListPage, AssetPage, Dashboard

DASHBOARD_JSON = (
    ("/health", "/health"),
    ("/stats", "/stats"),
    ("/runs", "/runs"),
    ("/compare-runs", "/compare-runs?source=csv"),
    ("/assets", "/assets"),
)


@dataclass(frozen=True, slots=True)
class Page:
    template: str
    context: dict[str, Any]
    status_code: int = 200


def dashboard_page(view: Dashboard) -> Page:
    return Page(
        "dashboard.html",
        {
            "title": "Dashboard",
            "view": view,
            "refresh_s": view.refresh_s,
            "json_links": DASHBOARD_JSON,
            "generated_at": view.now,
        },
    )


def asset_page(view: AssetPage) -> Page:
    a = view.asset
    return Page(
        "asset.html",
        {
            "title": f"{a.name} ({a.symbol})",
            "view": view,
            "refresh_s": view.refresh_s,
            "json_links": (
                (f"/assets/{a.id}", f"/assets/{a.id}"),
                ("/health", "/health"),
                ("/stats", "/stats"),
            ),
            "generated_at": view.now,
        },
    )


def _list_href(page_n: int, search: str | None) -> str:
    query: dict[str, str | int] = {"page": page_n}
    if search:
        query["search"] = search
    return f"/ui/assets?{urlencode(query)}"


def asset_list_page(view: AssetListPage) -> Page:
    pages = max(1, math.ceil(view.total / view.page_size))
    json_query: dict[str, str | int] = {"page": view.page, "page_size": view.page_size}
    if view.search:
        json_query["search"] = view.search
    json_href = f"/assets?{urlencode(json_query)}"
    return Page(
        "asset_list.html",
        {
            "title": "Assets",
            "view": view,
            "pages": pages,
            "json_href": json_href,
            "previous_href": _list_href(view.page - 1, view.search) if view.page > 1 else None,
            "next_href": _list_href(view.page + 1, view.search) if view.page < pages else None,
            "refresh_s": None,
            "json_links": (("/assets", json_href), ("/health", "/health")),
            "generated_at": view.now,
        },
    )


def error_page(status: int, message: str, *, refresh_s: int | None = None) -> Page:
    """An error as a page; one that refreshes itself when the condition is passing (503)."""
    return Page(
        "error.html",
        {
            "title": f"Error {status}",
            "status": status,
            "message": message,
            "refresh_s": refresh_s,
            "json_links": (),
            "generated_at": None,
        },
        status,
    )
