"""`python -m cryptoetl.dev` (`just dev`) end to end, as a real process.

The whole service comes up from one command: migrations, the stub upstream, the worker and the
API; within 60 s /health answers 200 and /data holds rows of every source; SIGTERM stops it all
cleanly. The database is a fresh one on the test server (DATABASE_URL), which is faster than an
embedded server; the embedded path itself is covered by its own, smaller test.
"""

from __future__ import annotations

import importlib.util
import os
import signal
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

from cryptoetl.dev import (
    PROJECT_ROOT,
    UPSTREAM_VARIABLES,
    free_port,
    parse_args,
    service_env,
    start_embedded_postgres,
    upstream_configured,
)
from tests.pg import REPO_ROOT, TestDatabase, fresh_database

SOURCES = {"csv", "coinpaprika", "coingecko", "rss"}
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
        [sys.executable, "-m", "cryptoetl.dev", "--port", str(port), "--data-dir", str(tmp_path)],
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
        assert any(f"http://127.0.0.1:{port}" in line for line in out.lines), out.tail()
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


def test_options_and_environment() -> None:
    options = parse_args([])
    assert (options.port, options.api, options.worker, options.stub) == (None, True, True, None)
    assert options.data_dir == PROJECT_ROOT / ".dev-data"
    options = parse_args(["--port", "9001", "--data-dir", "x", "--no-api", "--no-stub"])
    assert (options.port, options.api, options.stub) == (9001, False, False)
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
