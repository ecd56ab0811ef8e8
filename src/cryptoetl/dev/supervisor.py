"""One ``cryptoetl dev`` run: start every step in order, wait, stop everything in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Mapping
from typing import Any

from cryptoetl.config import redact_url
from cryptoetl.dev.children import Child, cryptoetl_command, spawn, stop_child, wait_http
from cryptoetl.dev.console import Console, DevError
from cryptoetl.dev.database import Database, start_embedded_postgres
from cryptoetl.dev.environment import (
    api_port,
    free_port,
    port_is_free,
    service_env,
    upstream_configured,
)
from cryptoetl.dev.options import LOOPBACK, Options

WILDCARD_HOST = "0.0.0.0"  # noqa: S104 (a name to compare with, not a bind)


class DevRun:
    """One ``cryptoetl dev`` run: start everything, wait, stop everything."""

    def __init__(
        self, options: Options, env: Mapping[str, str], console: Console | None = None
    ) -> None:
        self.options = options
        self.env = dict(env)
        self.console = console or Console()
        self.stop = asyncio.Event()
        self.database: Database | None = None
        self.services: list[Child] = []  # worker, api: stopped first
        self.stub: Child | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            return await self._run()
        except DevError as exc:
            self.console.say(f"error: {exc}")
            return 1
        finally:
            await self._shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.stop.is_set():
            self.console.say(f"{sig.name}: stopping")
        self.stop.set()

    async def _run(self) -> int:
        port = api_port(self.options, self.env)
        if self.options.api and not port_is_free(port, self.options.host):
            raise DevError(
                f"port {port} on {self.options.host} is in use: choose another with --port N "
                f"(`cryptoetl dev --port N`, `just dev --port N`)"
            )
        if not await self._step(self._start_database(), interruptible=False):
            return 0
        assert self.database is not None
        if not await self._step(self._migrate(), interruptible=False):
            return 0
        stub_url = None
        if self._want_stub():
            stub_url = await self._start_stub()
            if stub_url is None:
                return 0
        env = service_env(self.env, self.database.url, self.options.fixtures, stub_url)
        if self.options.worker:
            self.services.append(
                await spawn("worker", cryptoetl_command("worker"), env, self.console)
            )
        if self.options.api:
            command = cryptoetl_command("api", "--host", self.options.host, "--port", str(port))
            api = await spawn("api", command, env, self.console)
            self.services.append(api)
            self._tasks.add(asyncio.create_task(self._announce_ready(api, port)))
        self._banner(port, stub_url)
        return await self._wait()

    async def _step(self, step: Awaitable[None], *, interruptible: bool = True) -> bool:
        """Run a start-up step unless a stop signal comes first; True when it completed.

        A step that is not interruptible (starting the embedded server in a thread, a migration)
        runs to its end even then, so that _shutdown stops whatever it started.
        """
        task = asyncio.ensure_future(step)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            if interruptible:
                task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
            return False
        task.result()
        return not self.stop.is_set()

    async def _start_database(self) -> None:
        url = self.env.get("DATABASE_URL", "").strip()
        if url:
            self.database = Database(url=url, embedded=False)
            self.console.say(f"database: {redact_url(url)} (DATABASE_URL)")
            return
        pg_dir = self.options.data_dir / "pg"
        self.console.say(f"starting the embedded PostgreSQL in {pg_dir}")
        try:
            self.database = await asyncio.to_thread(start_embedded_postgres, self.options.data_dir)
        except DevError:
            raise
        except Exception as exc:
            raise DevError(
                f"the embedded PostgreSQL did not start ({type(exc).__name__}: {exc}); "
                f"see {pg_dir / 'log'}, or set DATABASE_URL"
            ) from exc

    async def _migrate(self) -> None:
        assert self.database is not None
        env = service_env(self.env, self.database.url, self.options.fixtures, None)
        child = await spawn("migrate", cryptoetl_command("migrate"), env, self.console)
        status = await child.process.wait()
        await child.pump
        if status != 0:
            raise DevError(f"migrations failed (exit status {status})")
        self.console.say("database migrated (alembic upgrade head)")

    def _want_stub(self) -> bool:
        if self.options.stub is not None:
            return self.options.stub
        return self.options.worker and not upstream_configured(self.env)

    async def _start_stub(self) -> str | None:
        port = free_port()
        command = cryptoetl_command(
            "stub-upstream", "--host", LOOPBACK, "--port", str(port),
            "--fixtures", str(self.options.fixtures),
        )  # fmt: skip
        self.stub = await spawn("stub", command, self.env, self.console)
        base_url = f"http://{LOOPBACK}:{port}"
        if not await self._step(self._wait_ready(f"{base_url}/", self.stub)):
            return None
        return base_url

    async def _wait_ready(self, url: str, child: Child) -> None:
        await wait_http(url, child)

    async def _announce_ready(self, api: Child, port: int) -> None:
        url = f"{self._api_url(port)}/health"
        try:
            status = await wait_http(url, api)
        except DevError as exc:
            self.console.say(f"API not ready: {exc}")
        else:
            self.console.say(f"API ready: {url} answered {status}")

    def _banner(self, port: int, stub_url: str | None) -> None:
        assert self.database is not None
        where = (
            f"embedded, data in {self.options.data_dir / 'pg'}"
            if self.database.embedded
            else "DATABASE_URL"
        )
        say = self.console.say
        if self.options.api:
            url = self._api_url(port)
            say(f"dashboard {url}/")
            say(f"API       {url}  (docs: /docs, health: /health, data: /data)")
        say(f"database  {redact_url(self.database.url)}  ({where})")
        if stub_url is not None:
            say(f"upstream  stub at {stub_url}, replaying {self.options.fixtures}")
        elif self.options.worker:
            say("upstream  the configured URLs (COINPAPRIKA_BASE_URL, COINGECKO_BASE_URL, ...)")
        say("Ctrl-C stops everything")

    def _api_url(self, port: int) -> str:
        """Where to reach the API from this machine (a wildcard bind answers on loopback)."""
        host = LOOPBACK if self.options.host == WILDCARD_HOST else self.options.host
        return f"http://{host}:{port}"

    async def _wait(self) -> int:
        """Until a stop signal (0) or a child that exits on its own (1)."""
        children = [*self.services, *([self.stub] if self.stub else [])]
        waiters: dict[asyncio.Future[Any], Child | None] = {
            asyncio.ensure_future(c.process.wait()): c for c in children
        }
        waiters[asyncio.ensure_future(self.stop.wait())] = None
        try:
            await asyncio.wait(set(waiters), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self.stop.is_set():
            return 0
        dead = next(c for c in children if not c.running)
        self.console.say(
            f"{dead.name} exited on its own (status {dead.process.returncode}): stopping everything"
        )
        return 1

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(stop_child(c, self.console) for c in self.services))
        if self.stub is not None:
            await stop_child(self.stub, self.console)
        if self.database is not None and self.database.embedded:
            self.console.say("stopping the embedded PostgreSQL")
            await asyncio.to_thread(self.database.stop)
        self.services.clear()
        self.stub = None
        self.database = None
