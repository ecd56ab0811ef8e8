"""``cryptoetl dev`` (``just dev``, the image's default command): the whole service, one tree.

In the foreground, in this order:

1. PostgreSQL: ``DATABASE_URL`` when set; otherwise an embedded server from the ``pgserver``
   wheel (the ``embedded`` extra, installed in the image and in the dev environment) with its
   data in ``<data-dir>/pg`` and a database ``cryptoetl``.
2. ``cryptoetl migrate`` (``alembic upgrade head``).
3. Unless real upstream URLs are configured (any of ``COINPAPRIKA_BASE_URL``,
   ``COINGECKO_BASE_URL``, ``RSS_FEED_URLS`` set), the stub upstream on a free loopback port,
   replaying ``<fixtures>``; the worker is pointed at it. ``CSV_PATHS`` defaults to
   ``<fixtures>/csv``.
4. ``cryptoetl worker`` and ``cryptoetl api`` (on ``--host``, default 127.0.0.1, and ``--port``
   or ``API_PORT`` or 8000).

Every child's output is streamed with a ``name |`` prefix. Ctrl-C or SIGTERM stops the children
(SIGTERM, a grace period, then SIGKILL) and then the embedded PostgreSQL; the exit status is 0
after such a stop and 1 when a child died on its own or a step failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from cryptoetl.config import redact_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV_DATABASE = "cryptoetl"
UPSTREAM_VARIABLES = ("COINPAPRIKA_BASE_URL", "COINGECKO_BASE_URL", "RSS_FEED_URLS")
# Where the embedded PostgreSQL keeps its data when --data-dir is not given (the image sets it
# to its volume, /data: nothing else in the image is writable).
DATA_DIR_VARIABLE = "DEV_DATA_DIR"
LOOPBACK = "127.0.0.1"
WILDCARD_HOST = "0.0.0.0"  # noqa: S104 (a name to compare with, not a bind)
STOP_GRACE_S = 10.0  # the worker itself finishes within 10 s of SIGTERM
READY_TIMEOUT_S = 30.0
STREAM_LIMIT = 1 << 20  # longest line read from a child (JSON log lines can be long)
DESCRIPTION = (
    "Run PostgreSQL (embedded unless DATABASE_URL is set), the migrations, the stub upstream "
    "(unless an upstream URL is configured), the worker and the API in the foreground. "
    "Ctrl-C or SIGTERM stops everything; the exit status is 0 after such a stop."
)


class DevError(RuntimeError):
    """A start-up step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Options:
    port: int | None
    data_dir: Path
    fixtures: Path
    host: str = LOOPBACK
    api: bool = True
    worker: bool = True
    stub: bool | None = None  # None: only when no upstream URL is configured
    exit_status_file: Path | None = None


def default_data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get(DATA_DIR_VARIABLE, "").strip() or PROJECT_ROOT / ".dev-data")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cryptoetl dev`` (``just dev`` passes its arguments through)."""
    parser.add_argument(
        "--host",
        default=LOOPBACK,
        help="address the API binds (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    parser.add_argument("--port", type=int, help="API port (default: API_PORT, else 8000)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(os.environ),
        help=f"where the embedded PostgreSQL keeps its data, in <data-dir>/pg "
        f"(default: {DATA_DIR_VARIABLE}, else .dev-data in the checkout)",
    )
    parser.add_argument(
        "--fixtures",
        type=Path,
        default=PROJECT_ROOT / "fixtures",
        help="recorded upstream responses and sample CSV files (default: fixtures/)",
    )
    parser.add_argument("--no-api", dest="api", action="store_false", help="do not start the API")
    parser.add_argument(
        "--no-worker", dest="worker", action="store_false", help="do not start the worker"
    )
    parser.add_argument(
        "--stub",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the upstreams from the stub (default: unless an upstream URL is configured)",
    )
    parser.add_argument(
        "--exit-status-file",
        type=Path,
        help="also write the exit status to this file (`just dev` reports it from there)",
    )


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir.resolve(),
        fixtures=args.fixtures.resolve(),
        api=args.api,
        worker=args.worker,
        stub=args.stub,
        exit_status_file=args.exit_status_file,
    )


# --------------------------------------------------------------------------- output


class Console:
    """Lines of every child, prefixed with its name, on one stream."""

    def __init__(self, out: TextIO | None = None, width: int = 7) -> None:
        self._out = out or sys.stdout
        self._width = width

    def line(self, name: str, text: str) -> None:
        self._out.write(f"{name:<{self._width}}| {text.rstrip()}\n")
        self._out.flush()

    def say(self, text: str) -> None:
        self.line("dev", text)


# --------------------------------------------------------------------------- database


@dataclass
class Database:
    url: str
    embedded: bool
    stop: Callable[[], None] = field(default=lambda: None)


def start_embedded_postgres(data_dir: Path, database: str = DEV_DATABASE) -> Database:
    """Start (or join) the pgserver instance in ``data_dir/pg`` and make sure ``database`` exists.

    Blocking; pgserver stops the server when the last handle on it is cleaned up.
    """
    try:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (harmless)
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError:
        raise DevError(
            "pgserver is not installed: install the `embedded` extra "
            "(pip install 'cryptoetl[embedded]'; `uv sync` does) or set DATABASE_URL"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    try:
        asyncio.run(_create_database(str(server.get_uri("postgres")), database))
    except BaseException:
        server.cleanup()
        raise
    return Database(url=str(server.get_uri(database)), embedded=True, stop=server.cleanup)


async def _create_database(admin_url: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


# --------------------------------------------------------------------------- environment


def upstream_configured(env: Mapping[str, str]) -> bool:
    return any(env.get(name, "").strip() for name in UPSTREAM_VARIABLES)


def stub_env(base_url: str) -> dict[str, str]:
    """The worker's upstream URLs for a stub at ``base_url`` (the real paths, see stub/server)."""
    return {
        "COINPAPRIKA_BASE_URL": base_url,
        "COINGECKO_BASE_URL": f"{base_url}/api/v3",
        "RSS_FEED_URLS": f"{base_url}/rss",
    }


def service_env(
    base: Mapping[str, str], database_url: str, fixtures: Path, stub_url: str | None
) -> dict[str, str]:
    """Environment of the cryptoetl children."""
    env = dict(base)
    env["DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    # The children write into our pipes, so their own "auto" would pick JSON; what counts is
    # where *we* write: readable lines on a terminal, JSON in a container or a log file.
    if not env.get("LOG_FORMAT", "").strip() and sys.stdout.isatty():
        env["LOG_FORMAT"] = "console"
    if not env.get("CSV_PATHS", "").strip():
        env["CSV_PATHS"] = str(fixtures / "csv")
    if stub_url is not None:
        env.update(stub_env(stub_url))
    return env


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when ``port`` can be bound on ``host`` (as the API is about to)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def api_port(options: Options, env: Mapping[str, str]) -> int:
    if options.port is not None:
        return options.port
    raw = env.get("API_PORT", "").strip()
    return int(raw) if raw.isdigit() else 8000


# --------------------------------------------------------------------------- children


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]

    @property
    def running(self) -> bool:
        return self.process.returncode is None


def cryptoetl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryptoetl", *args]


async def spawn(
    name: str, command: Sequence[str], env: Mapping[str, str], console: Console
) -> Child:
    """Start ``command`` in its own session (Ctrl-C reaches only us) and stream its output."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        limit=STREAM_LIMIT,
    )
    assert process.stdout is not None
    pump = asyncio.create_task(_pump(name, process.stdout, console), name=f"pump:{name}")
    return Child(name=name, process=process, pump=pump)


async def _pump(name: str, stream: asyncio.StreamReader, console: Console) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than STREAM_LIMIT: show what we have
            line = await stream.read(STREAM_LIMIT)
        if not line:
            return
        console.line(name, line.decode(errors="replace"))


async def stop_child(child: Child, console: Console, grace: float = STOP_GRACE_S) -> int | None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the child's whole process group."""
    process = child.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            console.say(f"{child.name} did not stop within {grace:.0f} s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(child.pump, 2.0)
    return process.returncode


async def wait_http(url: str, child: Child, timeout: float = READY_TIMEOUT_S) -> int:
    """Poll ``url`` until it answers (any HTTP status, returned) or the child exits."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if not child.running:
                raise DevError(f"{child.name} exited with status {child.process.returncode}")
            try:
                async with session.get(url) as response:
                    return response.status
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise DevError(f"{child.name} did not answer {url} within {timeout:.0f} s")
            await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- the run


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


def run(options: Options) -> int:
    """``cryptoetl dev``: the exit status (also written to ``--exit-status-file``)."""
    status = asyncio.run(DevRun(options, os.environ).run())
    if options.exit_status_file is not None:
        options.exit_status_file.parent.mkdir(parents=True, exist_ok=True)
        options.exit_status_file.write_text(f"{status}\n")
    return status
