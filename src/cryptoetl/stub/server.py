"""Stub upstream: replays recorded files on loopback, with fault injection.

Live or frozen (:mod:`cryptoetl.stub.replay`): by default the fixtures are served *live*, moved
to the current time step (60 s unless ``--step``) with prices on a seeded walk (``--seed``), so a
demo shows moving prices, history and fresh timestamps (:mod:`cryptoetl.stub.live`). *Frozen*
(``--frozen``, ``STUB_FROZEN=1``, ``mode=FROZEN``) serves the recorded bytes exactly, for the
tests that compare with them. Faults apply alike in both.

The app is assembled here from one module per concern: :mod:`~cryptoetl.stub.routes` (the
upstream paths), :mod:`~cryptoetl.stub.control` (``/_stub/...``), :mod:`~cryptoetl.stub.faults`
(the fault specs), :mod:`~cryptoetl.stub.inject` (the middleware that applies them),
:mod:`~cryptoetl.stub.hostile` (the hostile upstreams) and :mod:`~cryptoetl.stub.state` (faults
and request log of one app).

Logging: one short access line per request (``cryptoetl.stub.access``: method, path with secret
query values redacted, status, fault, duration), at the level of its status (see
:func:`cryptoetl.logs.access_level`, so ``ACCESS_LOG`` applies); never request headers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from cryptoetl.logs import access_level
from cryptoetl.redaction import redact_url
from cryptoetl.stub.control import add_control_routes
from cryptoetl.stub.faults import Fault
from cryptoetl.stub.inject import FAULT_KEY, fault_middleware
from cryptoetl.stub.replay import ReplayMode, replay_mode
from cryptoetl.stub.routes import add_upstream_routes
from cryptoetl.stub.state import STATE_KEY, RequestLogEntry, StubState

logger = logging.getLogger("cryptoetl.stub")
access_logger = logging.getLogger("cryptoetl.stub.access")


def build_app(
    fixtures_dir: Path,
    faults: Sequence[Fault] | str | None = None,
    mode: ReplayMode | None = None,
) -> web.Application:
    """The stub app; ``faults=None`` reads ``STUB_FAULTS``, ``mode=None`` the replay mode's
    variables (:func:`cryptoetl.stub.replay.replay_mode`: live unless ``STUB_FROZEN=1``)."""
    state = StubState(fixtures_dir=Path(fixtures_dir), mode=replay_mode() if mode is None else mode)
    state.set_faults(os.environ.get("STUB_FAULTS", "") if faults is None else faults)
    app = web.Application(middlewares=[fault_middleware])
    app[STATE_KEY] = state
    add_upstream_routes(app.router)
    add_control_routes(app.router)
    return app


@dataclass
class StubHandle:
    """A running stub: its base URL, its faults and its request log."""

    base_url: str
    state: StubState

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def set_faults(self, faults: Sequence[Fault] | str, *, append: bool = False) -> None:
        self.state.set_faults(faults, append=append)

    def add_fault(self, fault: Fault) -> None:
        self.state.set_faults([fault], append=True)

    @property
    def requests(self) -> list[RequestLogEntry]:
        return list(self.state.requests)

    def reset(self) -> None:
        self.state.reset()


class StubAccessLogger(AbstractAccessLogger):
    """One short line per request, at the level of its status; never any header."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        fault = request.get(FAULT_KEY)
        path = redact_url(request.path_qs)
        duration_ms = round(time * 1000, 1)
        self.logger.log(
            access_level(response.status),
            "%s %s %d%s %.1f ms",
            request.method,
            path,
            response.status,
            f" (fault {fault})" if fault else "",
            duration_ms,
            extra={
                "event": "stub_request",
                "method": request.method,
                "path": path,
                "status": response.status,
                "fault": fault,
                "duration_ms": duration_ms,
            },
        )


async def _start(
    app: web.Application, host: str, port: int, *, access_log: bool
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        app,
        access_log=access_logger if access_log else None,
        access_log_class=StubAccessLogger,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


@asynccontextmanager
async def running_stub(
    fixtures_dir: Path,
    port: int = 0,
    *,
    faults: Sequence[Fault] | str | None = None,
    host: str = "127.0.0.1",
    mode: ReplayMode | None = None,
) -> AsyncIterator[StubHandle]:
    """Run the stub on ``host:port`` (0 = a free port) for the duration of the block."""
    app = build_app(fixtures_dir, faults=faults, mode=mode)
    runner, bound = await _start(app, host, port, access_log=False)
    try:
        yield StubHandle(base_url=f"http://{host}:{bound}", state=app[STATE_KEY])
    finally:
        await runner.cleanup()


async def serve(
    port: int,
    fixtures_dir: Path,
    host: str = "127.0.0.1",
    faults: Sequence[Fault] | str | None = None,
    mode: ReplayMode | None = None,
) -> None:
    """Serve the stub until cancelled (``cryptoetl stub-upstream --port P --fixtures DIR``)."""
    app = build_app(fixtures_dir, faults=faults, mode=mode)
    runner, bound = await _start(app, host, port, access_log=True)
    replay = app[STATE_KEY].mode.describe()
    logger.info(
        "stub upstream listening on http://%s:%d (fixtures %s, %s)",
        host,
        bound,
        fixtures_dir,
        replay,
        extra={
            "event": "stub_started",
            "port": bound,
            "fixtures": str(fixtures_dir),
            "replay": replay,
        },
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
