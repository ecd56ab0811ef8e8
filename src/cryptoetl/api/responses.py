"""Cacheable JSON answers: served from the process's response cache, with ``ETag`` and ``304``.

A handler gives :func:`cached_json` a ``prepare`` step (validation, no database: it returns the
sources the answer reads and how to render it). A request whose path and query string were
answered before, and whose sources have not changed since, is answered from memory without
parsing or touching the database; a matching ``If-None-Match`` gets ``304 Not Modified``.
Rendered bodies carry the placeholder request id and latency (:mod:`cryptoetl.api.cache`),
replaced per answer.

``Cache-Control: no-cache``: clients and proxies may keep a copy but must revalidate it (cheaply,
with ``If-None-Match``) before using it, because the data changes with every worker commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response

from cryptoetl.api.cache import (
    LATENCY_PLACEHOLDER,
    REQUEST_ID_PLACEHOLDER,
    Cached,
    TaggedCache,
)
from cryptoetl.api.data.render import SeriesDocs
from cryptoetl.api.errors import JSON, latency_ms, request_id_of
from cryptoetl.api.schemas import Meta

CACHE_CONTROL = "no-cache"
Render = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Caches:
    """The process's caches; the tagged ones are emptied by the change listener."""

    responses: TaggedCache[Cached]
    totals: TaggedCache[Any]
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


def answer(request: Request[Any, Any, Any], entry: Cached) -> Response[bytes]:
    headers = {"ETag": entry.etag, "Cache-Control": CACHE_CONTROL}
    if etag_matches(request.headers.get("if-none-match"), entry.etag):
        return Response(b"", status_code=304, headers=headers)
    body = entry.body(request_id_of(request), latency_ms(request))
    return Response(body, media_type=JSON, headers=headers)


async def cached_json(
    request: Request[Any, Any, Any],
    caches: Caches,
    prepare: Callable[[], tuple[frozenset[str], Render]],
) -> Response[bytes]:
    key = (request.scope["path"], request.scope["query_string"])
    entry = caches.responses.get(key)
    if entry is None:
        tags, render = prepare()
        token = caches.responses.token(tags)
        entry = Cached.make(await render())
        caches.responses.put(key, entry, tags, token)
    return answer(request, entry)
