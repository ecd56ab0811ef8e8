"""The control endpoints through which tests and demos steer a running stub.

Control endpoints (never logged, never faulted):

* ``GET /_stub/requests`` -> the request log as JSON (method, path, query, headers, fault, time);
  header values, including ``Authorization`` and ``x-cg-demo-api-key``, are kept as sent.
* ``GET /_stub/faults`` -> the fault list with the ``remaining`` count of each.
* ``POST /_stub/faults`` -> replace the faults (``?append=1`` appends) with the body: one fault
  object, a JSON list of them, or the string form (:mod:`cryptoetl.stub.faults`). ``400`` on a
  bad spec.
* ``POST /_stub/reset`` -> clear faults and the request log.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from cryptoetl.stub.state import STATE_KEY


async def _get_requests(request: web.Request) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(request.app[STATE_KEY].requests),
        content_type="application/json",
    )


async def _get_faults(request: web.Request) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(request.app[STATE_KEY].faults_view()),
        content_type="application/json",
    )


async def _post_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    append = request.query.get("append", "") in ("1", "true", "yes")
    try:
        state.set_faults(await request.text(), append=append)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return await _get_faults(request)


async def _post_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"ok": True})


def add_control_routes(router: web.UrlDispatcher) -> None:
    """The ``/_stub/...`` paths (the fault middleware lets them pass untouched)."""
    router.add_get("/_stub/requests", _get_requests)
    router.add_get("/_stub/faults", _get_faults)
    router.add_post("/_stub/faults", _post_faults)
    router.add_post("/_stub/reset", _post_reset)
