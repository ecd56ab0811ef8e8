"""Request context: ``X-Request-ID``, timing, the access log line and request metrics.

Handlers read the context back through :func:`request_id_of`, :func:`latency_ms` and
:func:`meta_of` (the ``metadata`` of a JSON body).

It wraps Litestar's whole request pipeline (routing and exception handling included) rather than
sitting in Litestar's per-route middleware stack, because that stack only runs *after* routing:
a 404 for an unknown path or a 405 would otherwise leave without a request id, a log line or a
metric.

The client's ``X-Request-ID`` is kept when it is a sane token (``[A-Za-z0-9._-]{1,128}``);
anything else (absent, too long, odd characters that could forge log lines) is replaced by a
new UUID4. The id is stored in ``scope["state"]`` for handlers (body metadata) and error
handlers, and sent back on every response.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cryptoetl.api.request_metrics import RequestMetrics
from cryptoetl.api.schemas import Meta
from cryptoetl.logs import access_level

access_log = logging.getLogger("cryptoetl.api.access")

HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


def request_id_from(headers: Any) -> str:
    """The client's id when valid, else a fresh UUID4."""
    for name, value in headers:
        if name == HEADER:
            if _VALID_ID.fullmatch(value):
                return str(value.decode("ascii"))
            break
    return str(uuid.uuid4())


def request_id_of(request: Request[Any, Any, Any]) -> str:
    """The id :class:`RequestContext` gave this request (``-`` outside one)."""
    return request_id_in(request.scope)


def latency_ms(request: Request[Any, Any, Any]) -> float:
    """Milliseconds since the request context middleware saw the request."""
    return latency_ms_in(request.scope)


def request_id_in(scope: Scope) -> str:
    """:func:`request_id_of` for ASGI layers, which have the scope and no request."""
    rid = scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else "-"


def latency_ms_in(scope: Scope) -> float:
    """:func:`latency_ms` for ASGI layers: floored to microseconds, 0 outside a context."""
    started = scope.get("state", {}).get("request_started")
    if not isinstance(started, float):
        return 0.0
    elapsed = (time.perf_counter() - started) * 1000
    return math.floor(elapsed * 1000) / 1000


def meta_of(request: Request[Any, Any, Any]) -> Meta:
    """The ``metadata`` of a JSON body: this request's id and its latency so far."""
    return Meta(request_id=request_id_of(request), api_latency_ms=latency_ms(request))


class RequestContext:
    """ASGI wrapper around the app's request handler (see module docstring)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:  # websockets (none yet); lifespan never comes here
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["request_started"] = started
        id_header = (HEADER, request_id.encode("ascii"))
        status = 500  # what the client sees if the app dies before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            self._record(scope, request_id, status, time.perf_counter() - started)

    def _record(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        # path_template is set by Litestar's router once a route matched.
        route = scope.get("path_template") or "unmatched"
        method = str(scope.get("method", "GET"))
        self.metrics.observe(method, route, status, seconds)
        # At the level of the status, so that ACCESS_LOG=errors keeps only 4xx and 5xx lines.
        level = access_level(status)
        if not access_log.isEnabledFor(level):
            return  # before building the record's fields, which cost more than the check
        access_log.log(
            level,
            "%s %s %d %.1f ms",
            method,
            scope["path"],
            status,
            seconds * 1000,
            extra={
                "event": "http_request",
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": request_id,
            },
        )
