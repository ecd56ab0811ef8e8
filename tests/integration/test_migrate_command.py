"""`cryptoetl migrate` and `cryptoetl wait-for-schema` against a real server.

* Two upgrades started at once on an empty database both succeed, and only one of them runs
  the migrations (the advisory lock in migrations/env.py); Alembic's log says which revisions ran.
* `migrate` waits for a database that starts listening late (a loopback proxy that accepts only
  after a delay), gives up with a clear line when it never does, and at once (one line) when
  the login is refused.
* `wait-for-schema` (the Kubernetes init container) exits 0 only once the migrations ran.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg
import pytest

from cryptoetl.dev import free_port
from cryptoetl.migrate import migration_heads
from tests.pg import REPO_ROOT, TestDatabase, fresh_database

RAN_A_MIGRATION = re.compile(r"Running upgrade .*-> \w+")
SENTINEL_PASSWORD = "sentinel-pw-5d1e"


def _env(db: TestDatabase, database_url: str | None = None) -> dict[str, str]:
    """Only the writer-side URL: the reader login does not exist on an unmigrated database."""
    env = db.env(DATABASE_URL=database_url or db.admin_url, PYTHONUNBUFFERED="1")
    env.pop("API_DATABASE_URL", None)
    return env


def _cryptoetl(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryptoetl", *args]


def _revisions(db: TestDatabase) -> set[str]:
    with psycopg.connect(db.admin_url) as conn:
        return {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}


@pytest.fixture
def empty_database(pg_server: str) -> Iterator[TestDatabase]:
    with fresh_database(pg_server, migrated=False) as db:
        yield db


# --------------------------------------------------------------------------- the lock


def test_two_concurrent_upgrades_of_an_empty_database_both_succeed(
    empty_database: TestDatabase,
) -> None:
    command = [sys.executable, "-m", "alembic", "upgrade", "head"]
    procs = [
        subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_env(empty_database),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(proc.wait(120), *proc.communicate()) for proc in procs]
    for code, out, err in results:
        assert code == 0, out + err
    ran = [bool(RAN_A_MIGRATION.search(out + err)) for _, out, err in results]
    # One ran the migrations; the other waited for the lock, found head and did nothing.
    assert sorted(ran) == [False, True], results
    assert _revisions(empty_database) == migration_heads()


def test_migrate_logs_the_revisions_it_runs(empty_database: TestDatabase) -> None:
    result = subprocess.run(
        _cryptoetl("migrate"),
        env=_env(empty_database),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert RAN_A_MIGRATION.search(result.stderr), result.stderr


# --------------------------------------------------------------------------- a late database


class LateProxy:
    """A loopback TCP proxy to the test server that starts listening only after ``delay_s``:
    until then every connection is refused, as by a database that is still starting."""

    def __init__(self, server_url: str, delay_s: float | None) -> None:
        parts = urlsplit(server_url)
        socket_dir = dict(parse_qsl(parts.query)).get("host", "")
        port = parts.port or 5432
        self._unix_path = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir.startswith("/") else None
        self._target = (parts.hostname or "127.0.0.1", port)
        self.port = free_port()
        self._delay_s = delay_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def url(self, database_url: str) -> str:
        """``database_url`` through this proxy."""
        parts = urlsplit(database_url)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("host="))
        return urlunsplit((parts.scheme, f"{user}127.0.0.1:{self.port}", parts.path, query, ""))

    def __enter__(self) -> LateProxy:
        self._spawn(self._serve)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        if self._delay_s is None or self._stop.wait(self._delay_s):
            return  # never listens
        with socket.create_server(("127.0.0.1", self.port)) as listener:
            listener.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                self._spawn(self._forward, client)

    def _upstream(self) -> socket.socket:
        if self._unix_path is not None:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self._unix_path)
            return upstream
        return socket.create_connection(self._target)

    def _forward(self, client: socket.socket) -> None:
        with client, self._upstream() as upstream:
            self._spawn(self._pump, upstream, client)
            self._pump(client, upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.5)
        while not self._stop.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def test_migrate_waits_for_a_database_that_comes_up_late(
    empty_database: TestDatabase, pg_server: str
) -> None:
    with LateProxy(pg_server, delay_s=3.0) as proxy:
        started = time.monotonic()
        result = subprocess.run(
            _cryptoetl("migrate", "--wait", "60"),
            env=_env(empty_database, proxy.url(empty_database.admin_url)),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started >= 3.0  # it did not get through before the proxy listened
    assert '"event":"database_wait"' in result.stdout, result.stdout
    assert '"event":"database_ready"' in result.stdout, result.stdout
    assert _revisions(empty_database) == migration_heads()


def test_migrate_gives_up_after_its_wait(empty_database: TestDatabase, pg_server: str) -> None:
    with LateProxy(pg_server, delay_s=None) as proxy:
        result = subprocess.run(
            _cryptoetl("migrate", "--wait", "2"),
            env=_env(empty_database, proxy.url(empty_database.admin_url)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("cryptoetl: cannot reach the database, still after 2 s (--wait)")
    assert "check that PostgreSQL is running" in line
    assert '"event":"database_wait"' in result.stdout
    with psycopg.connect(empty_database.admin_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)


def test_migrate_does_not_retry_a_wrong_password(empty_database: TestDatabase) -> None:
    parts = urlsplit(empty_database.admin_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    wrong = urlunsplit(
        (parts.scheme, f"no_such_login_x:{SENTINEL_PASSWORD}@{host}", parts.path, parts.query, "")
    )
    started = time.monotonic()
    result = subprocess.run(
        _cryptoetl("migrate", "--wait", "60"),
        env=_env(empty_database, wrong),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 30, "an authentication error is not worth a retry"
    [line] = result.stderr.splitlines()
    assert line.startswith("cryptoetl: the database refused the login")
    assert "DATABASE_URL" in line
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr


# --------------------------------------------------------------------------- wait-for-schema


def test_wait_for_schema_returns_once_the_migrations_ran(empty_database: TestDatabase) -> None:
    env = _env(empty_database)
    early = subprocess.run(
        _cryptoetl("wait-for-schema", "--timeout", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert early.returncode == 1, early.stdout + early.stderr
    assert '"event":"schema_not_ready"' in early.stdout

    waiting = subprocess.Popen(
        _cryptoetl("wait-for-schema", "--timeout", "120"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        migrated = subprocess.run(
            _cryptoetl("migrate"), env=env, capture_output=True, text=True, timeout=120
        )
        assert migrated.returncode == 0, migrated.stderr
        assert waiting.wait(60) == 0, waiting.communicate()[0]
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert '"event":"schema_ready"' in (waiting.stdout.read() if waiting.stdout else "")


def test_migrate_and_wait_for_schema_explain_themselves() -> None:
    for command in ("migrate", "wait-for-schema"):
        result = subprocess.run(
            _cryptoetl(command, "--help"),
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0
        assert "SECONDS" in result.stdout


def test_wait_for_schema_works_with_the_reader_login(database: TestDatabase) -> None:
    """The API's init container has only the reader login (SELECT, read-only sessions)."""
    env = database.env(API_DATABASE_URL=database.reader_url)
    env.pop("DATABASE_URL")
    result = subprocess.run(
        _cryptoetl("wait-for-schema", "--timeout", "10"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"event":"schema_ready"' in result.stdout
