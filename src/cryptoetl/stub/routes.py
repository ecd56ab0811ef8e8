"""The upstream routes: the recorded fixtures, served live or frozen by the app's replay mode.

Routes (the real upstream paths, so only base URLs change):

* ``GET /v1/tickers`` -> ``{fixtures}/coinpaprika/tickers.json``
  (``COINPAPRIKA_BASE_URL=http://127.0.0.1:P``)
* ``GET /api/v3/coins/markets?page=N`` -> ``{fixtures}/coingecko/markets_page_{N}.json``
  (``N`` defaults to 1; a page without a file answers ``[]``;
  ``COINGECKO_BASE_URL=http://127.0.0.1:P/api/v3``)
* ``GET /rss`` -> ``{fixtures}/rss/feed.xml``, ``GET /rss/{name}`` -> ``{fixtures}/rss/{name}.xml``
  (``application/rss+xml`` with ``ETag`` = hash of the bytes served and ``Last-Modified`` = file
  mtime, or live the newest date served when later; ``304`` when ``If-None-Match`` matches, or,
  without ``If-None-Match``, when ``If-Modified-Since`` is not older than ``Last-Modified``)
* ``GET /`` -> ``200 ok``
"""

from __future__ import annotations

import asyncio
import hashlib
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import msgspec
from aiohttp import web

from cryptoetl.stub.state import STATE_KEY

RSS_CONTENT_TYPE = "application/rss+xml"


async def _read(path: Path) -> bytes | None:
    try:
        return await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return None


def _not_found(what: str) -> web.Response:
    body = msgspec.json.encode({"error": f"no fixture {what}"})
    return web.Response(status=404, body=body, content_type="application/json")


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _tickers(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await _read(state.fixtures_dir / "coinpaprika" / "tickers.json")
    if body is None:
        return _not_found("coinpaprika/tickers.json")
    return web.Response(body=state.mode.tickers(body), content_type="application/json")


async def _markets(request: web.Request) -> web.Response:
    raw = request.query.get("page", "1")
    if not raw.isdigit() or int(raw) < 1:
        error = msgspec.json.encode({"error": f"invalid page {raw!r}"})
        return web.Response(status=400, body=error, content_type="application/json")
    state = request.app[STATE_KEY]
    body = await _read(state.fixtures_dir / "coingecko" / f"markets_page_{int(raw)}.json")
    page = b"[]" if body is None else state.mode.markets(body)
    return web.Response(body=page, content_type="application/json")


async def _rss(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "feed")
    state = request.app[STATE_KEY]
    path = state.fixtures_dir / "rss" / f"{name}.xml"
    recorded = await _read(path)
    if recorded is None:
        return _not_found(f"rss/{name}.xml")
    body, last_modified = state.mode.feed(recorded, path.stat().st_mtime)
    headers = {
        "ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"',
        "Last-Modified": formatdate(last_modified, usegmt=True),
    }
    if _not_modified(request, headers["ETag"], last_modified):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers, content_type=RSS_CONTENT_TYPE)


def _not_modified(request: web.Request, etag: str, last_modified: int) -> bool:
    """RFC 9110: ``If-None-Match`` wins; otherwise ``If-Modified-Since`` is compared."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return since >= last_modified


def add_upstream_routes(router: web.UrlDispatcher) -> None:
    """The upstream paths, as the real upstreams have them (so only base URLs change)."""
    router.add_get("/", _root)
    router.add_get("/v1/tickers", _tickers)
    router.add_get("/api/v3/coins/markets", _markets)
    router.add_get("/rss", _rss)
    router.add_get("/rss/{name:[A-Za-z0-9_-]+}", _rss)
