"""End-to-end fixtures: the stub upstream on loopback and the real `cryptoetl` command."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from cryptoetl.stub.replay import FROZEN
from cryptoetl.stub.server import StubHandle, running_stub
from tests.pg import TestDatabase

SENTINEL_PAPRIKA_KEY = "sentinel-paprika-key-7c1e"
SENTINEL_GECKO_KEY = "sentinel-gecko-key-93fa"


@dataclass
class WorkerResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
async def stub(fixtures_dir: Path) -> AsyncIterator[StubHandle]:
    """The stub, frozen: these tests compare with the fixtures' exact values and rerun the
    worker expecting nothing new upstream (a live stub would move on between two runs)."""
    async with running_stub(fixtures_dir, mode=FROZEN) as handle:
        yield handle


@pytest.fixture
def csv_dir(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A private copy of our CSV samples (tests append to them)."""
    target = tmp_path / "csv"
    shutil.copytree(fixtures_dir / "csv", target)
    return target


def worker_env(db: TestDatabase, stub: StubHandle, csv_paths: str, **extra: str) -> dict[str, str]:
    settings = {
        "COINPAPRIKA_BASE_URL": stub.base_url,
        "COINGECKO_BASE_URL": f"{stub.base_url}/api/v3",
        "RSS_FEED_URLS": f"{stub.base_url}/rss",
        "COINPAPRIKA_API_KEY": SENTINEL_PAPRIKA_KEY,
        "COINGECKO_API_KEY": SENTINEL_GECKO_KEY,
        "COINGECKO_PAGES": "3",
        "CSV_PATHS": csv_paths,
        "HTTP_MAX_WAIT_S": "20",
        "LOG_LEVEL": "INFO",
    }
    return db.env(**{**settings, **extra})


async def start_worker(
    env: dict[str, str], *args: str, output: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`cryptoetl worker ARGS` as a real subprocess (the stub keeps serving in this loop)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cryptoetl", "worker", *args, env=env, stdout=output, stderr=output
    )


async def run_worker(env: dict[str, str], *args: str, timeout: float = 120) -> WorkerResult:
    """One pass: `cryptoetl worker --once ARGS`, to completion."""
    proc = await start_worker(env, "--once", *args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return WorkerResult(proc.returncode or 0, out.decode(), err.decode())


def query(db: TestDatabase, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(db.admin_url) as conn:
        return list(conn.execute(sql, params or None).fetchall())


# --- Reliability suite (#6): servers on loopback, a TCP proxy in front of PostgreSQL ----------

import contextlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import httpx  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def via(url: str, port: int, host: str = "127.0.0.1") -> str:
    """The same database URL, through another host and port (e.g. a proxy)."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("host="))
    return urlunsplit((parts.scheme, f"{user}{host}:{port}", parts.path, query, ""))


@dataclass
class ApiServer:
    """`cryptoetl api` (Granian) on a loopback port, as a process group of our own."""

    base_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def running_api(env: dict[str, str], log_dir: Path) -> AsyncIterator[ApiServer]:
    """Start the real API server (`python -m cryptoetl api`) and wait until it answers."""
    port = free_port()
    log_path = log_dir / f"api-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cryptoetl", "api", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "API_WORKERS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Granian's worker goes with it
        )
    server = ApiServer(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        await wait_http(f"{server.base_url}/schema/openapi.json", proc=proc, log_path=log_path)
        yield server
    finally:
        # In a thread: this event loop may be serving something the server needs in order to
        # stop (the TcpProxy in front of its database).
        await asyncio.to_thread(stop_process_group, proc)


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the group we started (by its id), then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def wait_http(
    url: str,
    *,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                log = log_path.read_text(errors="replace")[-3000:] if log_path else ""
                raise AssertionError(f"server exited with {proc.returncode}:\n{log}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


class TcpProxy:
    """A loopback TCP proxy we can cut (every connection aborted, new ones refused) and restore
    on the same port, to take PostgreSQL away from the worker and the API without touching
    the shared server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        # An embedded server may listen on a Unix socket only (?host=/dir in its URL).
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    @property
    def up(self) -> bool:
        return self._server is not None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            host, port = self.target
            if host.startswith("/"):
                socket_path = f"{host}/.s.PGSQL.{port}"
                up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()
        self._tasks.difference_update(pumps)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    async def cut(self) -> None:
        """Refuse new connections and abort every open one (both sides)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()


@pytest.fixture
async def pg_proxy(database: TestDatabase) -> AsyncIterator[TcpProxy]:
    """A cuttable loopback proxy in front of this session's PostgreSQL server."""
    parts = urlsplit(database.admin_url)
    socket_dir = next((q[5:] for q in parts.query.split("&") if q.startswith("host=/")), None)
    proxy = TcpProxy(socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
