"""HTTP methods beyond routing: ``HEAD`` on every ``GET`` route, ``Allow`` on every ``405``.

Litestar routes ``HEAD`` only to handlers declared for it, and its ``405`` answers lose the
allowed methods once our JSON error handler renders them. Every route of this API is ``GET``
(it only reads), so:

* :class:`HeadAsGet` answers ``HEAD`` as the ``GET`` of the same URL, headers included
  (``Content-Length`` too, as RFC 9110 §9.3.2 allows), without the body. The access log and
  the metrics still see ``HEAD``.
* :func:`method_not_allowed` is the ``405`` handler: the JSON error body, plus ``Allow`` with
  the route's methods (and ``HEAD`` wherever ``GET`` is allowed).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cryptoetl.api.errors import error_response


class HeadAsGet:
    """ASGI wrapper: a ``HEAD`` request runs the ``GET`` route and sends no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # The same scope object, so that what routing records in it (the route template) is
        # seen by the wrappers outside; the method is put back before they read it.
        scope["method"] = "GET"
        try:
            await self.app(scope, receive, headers_only)
        finally:
            scope["method"] = "HEAD"


def allowed_methods(exc: MethodNotAllowedException) -> str:
    listed = [m.strip().upper() for m in (exc.headers or {}).get("allow", "").split(",")]
    methods = [m for m in listed if m]
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    return ", ".join(methods)


def method_not_allowed(
    request: Request[Any, Any, Any], exc: MethodNotAllowedException
) -> Response[bytes]:
    response = error_response(request, 405, "method_not_allowed", exc.detail)
    response.headers["Allow"] = allowed_methods(exc)
    return response
