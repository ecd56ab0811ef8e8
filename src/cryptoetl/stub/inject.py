"""Fault injection: the middleware that logs every request and applies the fault it matches.

Control endpoints (``/_stub/...``) pass untouched. A status, ``reset``, ``malformed`` or
``ratelimit_text`` fault answers instead of the route; ``truncate`` and ``empty`` cut the route's
answer; the hostile kinds are answered by :mod:`cryptoetl.stub.hostile`.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import time
from email.utils import formatdate

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from cryptoetl.stub.faults import HOSTILE_KINDS, MALFORMED_BODY, Fault, is_error_status
from cryptoetl.stub.hostile import hostile_response
from cryptoetl.stub.state import STATE_KEY, RequestLogEntry

CONTROL_PREFIX = "/_stub/"
FAULT_KEY = web.RequestKey("stub_fault", str)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    fault = state.take_fault(request.path)
    state.requests.append(
        RequestLogEntry(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            fault=fault.kind if fault else None,
            time=time.time(),
        )
    )
    if fault is None:
        return await handler(request)
    request[FAULT_KEY] = fault.kind
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    return await _apply_fault(fault, request, handler)


async def _apply_fault(fault: Fault, request: web.Request, handler: Handler) -> web.StreamResponse:
    kind = fault.kind
    if is_error_status(kind):
        return _error_response(fault)
    if kind == "reset":
        _reset_connection(request)
        return web.Response(status=500)  # never reaches the client: the transport is gone
    if kind == "malformed":
        return web.Response(body=MALFORMED_BODY, content_type="application/json")
    if kind == "ratelimit_text":
        return web.Response(text="Rate limit exceeded", content_type="text/plain")
    if kind in HOSTILE_KINDS:
        return await hostile_response(fault, request)
    response = await handler(request)
    if kind in ("truncate", "empty") and isinstance(response, web.Response):
        body = response.body if isinstance(response.body, bytes) else b""
        return _with_body(response, body[: len(body) // 2] if kind == "truncate" else b"")
    return response  # "delay" (already waited)


def _error_response(fault: Fault) -> web.Response:
    status = int(fault.kind)
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        if fault.retry_after_date:
            headers["Retry-After"] = formatdate(
                math.ceil(time.time() + fault.retry_after), usegmt=True
            )
        else:
            headers["Retry-After"] = str(fault.retry_after)
    body = msgspec.json.encode({"error": f"injected fault: HTTP {status}"})
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


def _with_body(response: web.Response, body: bytes) -> web.Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return web.Response(status=response.status, body=body, headers=headers)


def _reset_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:  # SO_LINGER 0: close() sends a TCP RST instead of a FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
