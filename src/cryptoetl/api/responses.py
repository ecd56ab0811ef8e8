"""Cacheable JSON answers: served from the process's response cache, with ``ETag`` and ``304``.

A handler gives :func:`cached_json` a ``prepare`` step (validation, no database: it returns the
sources the answer reads and how to render it). A request whose path and query string were
answered before, and whose sources have not changed since, is answered from memory without
parsing or touching the database; a matching ``If-None-Match`` gets ``304 Not Modified``.
Rendered bodies carry the placeholder request id and latency (:mod:`cryptoetl.api.cache`),
replaced per answer.

``Cache-Control: no-cache``: clients and proxies may keep a copy but must revalidate it (cheaply,
with ``If-None-Match``) before using it, because the data changes with every worker commit.

A hit is answered by :class:`CachedAnswers`, in front of Litestar's routing: the same bytes
and headers the handler would send, without routing, dependency injection or parameter
parsing, which cost more than the answer itself. It can only answer what a handler cached for
that exact path and query string, so validation and errors stay the handler's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from cryptoetl.api.cache import (
    LATENCY_PLACEHOLDER,
    REQUEST_ID_PLACEHOLDER,
    Cached,
    TaggedCache,
)
from cryptoetl.api.data.render import SeriesDocs
from cryptoetl.api.data.window import WindowCurve
from cryptoetl.api.errors import JSON
from cryptoetl.api.request_context import latency_ms_in, request_id_in
from cryptoetl.api.schemas import Meta

CACHE_CONTROL = "no-cache"
Render = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Caches:
    """The process's caches; the tagged ones are emptied by the change listener."""

    responses: TaggedCache[Cached]
    totals: TaggedCache[Any]
    windows: TaggedCache[WindowCurve]
    series_docs: SeriesDocs  # immutable once written: never invalidated


def caches_of(request: Request[Any, Any, Any]) -> Caches:
    caches = request.app.state.caches
    assert isinstance(caches, Caches)
    return caches


def placeholder_meta() -> Meta:
    """The metadata a cacheable body is rendered with (replaced per answer)."""
    return Meta(request_id=REQUEST_ID_PLACEHOLDER, api_latency_ms=LATENCY_PLACEHOLDER)


def etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110 13.1.2): ``W/`` is ignored."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


class Answer:
    """A cached entry as sent to one request: its status, headers and body (a ``304`` when
    ``If-None-Match`` matches), and the ASGI app that sends them. Both paths send one: the
    handler (:func:`cached_json`, which Litestar sends as the ASGI app it is) and
    :class:`CachedAnswers` before routing. A Litestar ``ASGIResponse`` would rebuild these
    headers through its header container on every request, a fortieth of a page's work."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, entry: Cached, scope: Scope) -> None:
        """The answer to the request of ``scope`` (its ``If-None-Match``, id and latency)."""
        self.headers = [(b"etag", entry.etag.encode()), (b"cache-control", _CACHE_CONTROL)]
        if etag_matches(_header(scope, b"if-none-match"), entry.etag):
            # No Content-Length: a 304's would have to be the 200's (RFC 9110 8.6), not 0.
            self.status, self.body = 304, b""
            return
        self.status, self.body = 200, entry.body(request_id_in(scope), latency_ms_in(scope))
        self.headers += [
            (b"content-type", _JSON),
            (b"content-length", str(len(self.body)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": self.status,
            "headers": self.headers,
        }
        await send(start)
        end: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": self.body,
            "more_body": False,
        }
        await send(end)


_CACHE_CONTROL, _JSON = CACHE_CONTROL.encode(), JSON.encode()


async def cached_json(
    request: Request[Any, Any, Any],
    caches: Caches,
    prepare: Callable[[], tuple[frozenset[str], Render]],
) -> Answer:
    key = (request.scope["path"], request.scope["query_string"])
    entry = caches.responses.get(key)
    if entry is None:  # usual: a hit is answered before routing (CachedAnswers)
        tags, render = prepare()
        token = caches.responses.token(tags)
        route = request.scope.get("path_template") or request.scope["path"]
        entry = Cached.make(await render(), route)
        caches.responses.put(key, entry, tags, token)
    return Answer(entry, request.scope)


class CachedAnswers:
    """ASGI layer: a GET whose path and query string are in the response cache is answered from
    it before Litestar sees the request (see the module doc). A HEAD arrives here as its GET
    (:class:`~cryptoetl.api.methods.HeadAsGet` wraps this layer and drops the body)."""

    def __init__(self, app: ASGIApp, cache: TaggedCache[Cached]) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = None
        if scope["type"] == ScopeType.HTTP and scope["method"] == "GET":
            entry = self.cache.get((scope["path"], scope["query_string"]))
        if entry is None:
            await self.app(scope, receive, send)
            return
        scope["path_template"] = entry.route
        await Answer(entry, scope)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    # Off the scope: ``request.headers`` would build a Headers object for one header.
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
