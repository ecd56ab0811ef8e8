"""`cryptoetl dev` (`just dev`, the image's default command) end to end, as a real process.

The whole service comes up from one command: migrations, the stub upstream, the worker and the
API; within 60 s /health answers 200 and /data holds rows of every source; SIGTERM stops it all
cleanly. The database is a fresh one on the test server (DATABASE_URL), which is faster than an
embedded server; the embedded path is covered by the `uv run just dev` tests below, which stop
it with SIGTERM (as a service manager does) and with SIGINT to the process group (as Ctrl-C
does), and check that no process of the run is left and the port is free.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import cryptoetl
from cryptoetl import cli
from cryptoetl.dev import (
    PROJECT_ROOT,
    UPSTREAM_VARIABLES,
    Options,
    free_port,
    options_from,
    port_is_free,
    service_env,
    start_embedded_postgres,
    upstream_configured,
)
from tests.pg import REPO_ROOT, TestDatabase, fresh_database

SOURCES = {"csv", "coinpaprika", "coingecko", "rss"}
DEV_COMMAND = (sys.executable, "-m", "cryptoetl", "dev")
READY_WITHIN_S = 60.0
STOP_WITHIN_S = 12.0  # the worker stops within 10 s; the rest is process teardown


class Output:
    """A child's output, drained by a thread (a full pipe would block the child)."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode(errors="replace").rstrip())

    def tail(self, n: int = 60) -> str:
        return "\n".join(line[:400] for line in self.lines[-n:])


def _dev_env(db: TestDatabase) -> dict[str, str]:
    """The test database, the stub upstream (no upstream URL set), default sources and CSV."""
    env = db.env()
    for name in (
        *UPSTREAM_VARIABLES,
        "API_DATABASE_URL",  # the reader login does not exist yet: the API uses DATABASE_URL
        "API_PORT",
        "CSV_PATHS",
        "ENABLED_SOURCES",
        "INTERVALS_S",
    ):
        env.pop(name, None)
    return env


@pytest.fixture
def dev_database(pg_server: str) -> Iterator[TestDatabase]:
    """An empty database: `cryptoetl.dev` migrates it itself."""
    with fresh_database(pg_server, migrated=False) as db:
        yield db


def _sources_seen(client: httpx.Client) -> set[str]:
    seen = {row["source_type"] for row in client.get("/data").json()["data"]}
    for source in sorted(SOURCES - seen):
        body = client.get("/data", params={"source_type": source}).json()
        seen |= {row["source_type"] for row in body["data"]}
    return seen


def _wait_until_serving(client: httpx.Client, proc: subprocess.Popen[bytes], out: Output) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    health: int | None = None
    seen: set[str] = set()
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dev exited early ({proc.returncode}):\n{out.tail()}"
        try:
            health = client.get("/health").status_code
            if health == 200:
                seen = _sources_seen(client)
                if seen >= SOURCES:
                    return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    pytest.fail(
        f"within {READY_WITHIN_S:.0f} s: /health {health}, sources in /data {sorted(seen)}\n"
        f"{out.tail()}"
    )


def test_dev_serves_every_source_then_stops_cleanly(
    dev_database: TestDatabase, tmp_path: Path
) -> None:
    if importlib.util.find_spec("cryptoetl.api.app") is None:
        pytest.skip("cryptoetl.api.app does not exist yet")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptoetl",
            "dev",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        env=_dev_env(dev_database),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out = Output(proc.stdout)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            _wait_until_serving(client, proc, out)
        assert f"dev    | dashboard http://127.0.0.1:{port}/" in out.lines, out.tail()
        assert any(f"http://127.0.0.1:{port}" in line and "/docs" in line for line in out.lines)
        assert "dev    | database migrated (alembic upgrade head)" in out.lines
        for prefix in ("dev    | ", "stub   | ", "worker | ", "api    | "):
            assert any(line.startswith(prefix) for line in out.lines), (prefix, out.tail())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            returncode = proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"dev did not stop within {STOP_WITHIN_S:.0f} s:\n{out.tail()}")
    assert returncode == 0, out.tail()
    assert time.monotonic() - started < STOP_WITHIN_S
    # Every child was stopped: soon nothing of this run holds a connection to the database
    # (a server backend goes away shortly after its client closed the connection).
    deadline = time.monotonic() + 5
    with psycopg.connect(dev_database.admin_url, autocommit=True) as conn:
        while True:
            others = conn.execute(
                "SELECT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
            if not others or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert others == [], others


def test_embedded_postgres_starts_creates_the_database_and_stops(tmp_path: Path) -> None:
    """The `DATABASE_URL`-less path of `just dev`: pgserver in <data-dir>/pg."""
    pytest.importorskip("pgserver")
    db = start_embedded_postgres(tmp_path)
    try:
        assert db.embedded
        assert db.url.startswith("postgresql://")
        assert "/cryptoetl" in db.url
        with psycopg.connect(db.url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("cryptoetl",)
        # A second start on the same data directory finds the database there.
        again = start_embedded_postgres(tmp_path)
        assert again.url == db.url
    finally:
        db.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(db.url, connect_timeout=3).close()


def _dev_options(*argv: str) -> Options:
    return options_from(cli._parser().parse_args(["dev", *argv]))


def test_options_and_environment() -> None:
    options = _dev_options()
    assert (options.port, options.api, options.worker, options.stub) == (None, True, True, None)
    assert options.host == "127.0.0.1"
    if not os.environ.get("DEV_DATA_DIR"):
        assert options.data_dir == PROJECT_ROOT / ".dev-data"
    options = _dev_options(
        "--port", "9001", "--data-dir", "x", "--no-api", "--no-stub", "--host", "0.0.0.0"
    )  # fmt: skip
    assert (options.port, options.api, options.stub, options.host) == (
        9001,
        False,
        False,
        "0.0.0.0",
    )
    assert options.data_dir == Path("x").resolve()

    assert not upstream_configured({"COINGECKO_BASE_URL": " "})
    assert upstream_configured({"RSS_FEED_URLS": "https://example.org/rss"})
    env = service_env({"LOG_LEVEL": "DEBUG"}, "postgresql://u@h/db", Path("/f"), "http://s:1")
    assert env["DATABASE_URL"] == "postgresql://u@h/db"
    assert env["CSV_PATHS"] == "/f/csv"
    assert env["COINGECKO_BASE_URL"] == "http://s:1/api/v3"
    assert env["RSS_FEED_URLS"] == "http://s:1/rss"
    assert env["LOG_LEVEL"] == "DEBUG"
    kept = service_env({"CSV_PATHS": "mine.csv"}, "postgresql://u@h/db", Path("/f"), None)
    assert kept["CSV_PATHS"] == "mine.csv"
    assert "COINPAPRIKA_BASE_URL" not in kept


# --------------------------------------------------------------------------- `uv run just dev`


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, command line) of every process on the machine."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[3]), cmdline)
    return table


def _run_processes(root: int, data_dir: Path) -> tuple[set[int], set[int]]:
    """The pids and sessions of a dev run: the tree under ``root`` (its children start sessions
    of their own) and the embedded PostgreSQL, which pg_ctl detaches from it."""
    table = _processes()
    pids = {root}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in pids}
        grew = not children <= pids
        pids |= children
    pids |= {pid for pid, (_, _, cmd) in table.items() if str(data_dir) in cmd}
    sessions = {table[pid][1] for pid in pids if pid in table}
    return pids, sessions


def _left_over(pids: set[int], sessions: set[int]) -> list[str]:
    return [
        f"{pid}: {cmd[:200]}"
        for pid, (_, sid, cmd) in _processes().items()
        if pid in pids or sid in sessions
    ]


@pytest.fixture
def just_dev_env() -> dict[str, str]:
    """No DATABASE_URL (the embedded PostgreSQL), no upstream URL (the stub)."""
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    if importlib.util.find_spec("pgserver") is None:
        pytest.skip("pgserver (the embedded extra) is not installed")
    drop = (*UPSTREAM_VARIABLES, "DATABASE_URL", "API_DATABASE_URL", "API_PORT", "CSV_PATHS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "INTERVALS_S": "csv=3600,coinpaprika=3600,coingecko=3600,rss=3600"}


@pytest.mark.parametrize("how", ["SIGTERM to uv", "SIGINT to the group"])
def test_just_dev_stops_every_process_and_exits_0(
    how: str, just_dev_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        ["uv", "run", "just", "dev", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env=just_dev_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own, as a terminal's foreground job has
    )
    out = Output(proc.stdout)
    pids: set[int] = set()
    sessions: set[int] = set()
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while not any(line.startswith("dev    | API ready") for line in out.lines):
            assert proc.poll() is None, f"exited early ({proc.returncode}):\n{out.tail()}"
            assert time.monotonic() < deadline, f"API not ready:\n{out.tail()}"
            time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code in (200, 503)
        pids, sessions = _run_processes(proc.pid, data_dir)
        assert any(
            "postgres" in cmd for _, _, cmd in [_processes().get(p, (0, 0, "")) for p in pids]
        )
        if how == "SIGTERM to uv":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            returncode = proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"not stopped within {STOP_WITHIN_S:.0f} s:\n{out.tail()}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert returncode == 0, out.tail()
    assert not any("recipe `dev`" in line or "was terminated" in line for line in out.lines)
    assert "dev    | stopping the embedded PostgreSQL" in out.lines, out.tail()
    # Nothing of the run is left (a backend can take a moment to go after its postmaster).
    deadline = time.monotonic() + 5
    while (left := _left_over(pids, sessions)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], left
    assert port_is_free(port)


def test_just_dev_takes_options_and_reports_a_failure(
    just_dev_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["uv", "run", "just", "dev", "--port", str(port), "--data-dir", str(tmp_path)],
            cwd=REPO_ROOT,
            env=just_dev_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {port} on 127.0.0.1 is in use" in result.stdout
    assert "just dev --port N" in result.stdout
    assert not list(tmp_path.iterdir()), "nothing was started"


def test_the_cli_explains_itself() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "cryptoetl", "--version"], capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0
    assert version.stdout.strip() == f"cryptoetl {cryptoetl.__version__}"
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"cryptoetl {name} {action.option_strings or action.dest}: no help"
