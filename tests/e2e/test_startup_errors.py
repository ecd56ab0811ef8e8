"""Every command that cannot start because of its database says so in one line (issues 13.5,
14.10): the cause, the database's words and the fix, on stderr; exit status 1; no traceback and
no password. ``worker --once`` waits ``DB_WAIT_S`` for a database that is down, then gives up;
the daemon waits as long as it takes and carries on once an operator fixed the cause."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from cryptoetl.migrate import migration_heads
from tests.e2e.conftest import free_port, query, start_worker, via
from tests.pg import REPO_ROOT, TestDatabase, fresh_database, migrate, with_database

SENTINEL_PASSWORD = "sentinel-db-pw-8c2f51"
WORKER_ONCE = ("-m", "cryptoetl", "worker", "--once")
WORKER_CHECK = ("-m", "cryptoetl", "worker", "--check")
MIGRATE = ("-m", "cryptoetl", "migrate", "--wait", "30")
ALEMBIC = ("-m", "alembic", "upgrade", "head")


def _run(args: tuple[str, ...], env: dict[str, str], timeout: float = 120) -> tuple[str, float]:
    """Run ``python ARGS``; it must fail with one clean line on stderr: that line, and the time."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={**env, "LOG_FORMAT": "json", "CSV_PATHS": "", "ENABLED_SOURCES": "csv"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert SENTINEL_PASSWORD[:8] not in output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cryptoetl: "), lines[0]
    return lines[0], elapsed


def _with_login(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, ""))


@pytest.fixture(scope="module")
def unmigrated(pg_server: str) -> Iterator[TestDatabase]:
    with fresh_database(pg_server, migrated=False) as db:
        yield db


@pytest.fixture(scope="module")
def behind(pg_server: str) -> Iterator[TestDatabase]:
    """A database at the first migration only: this code needs a later head."""
    with fresh_database(pg_server, migrated=False) as db:
        migrate(db.admin_url, db.writer_role, db.reader_role, target="0001")
        yield db


@pytest.mark.parametrize("command", [WORKER_ONCE, WORKER_CHECK, MIGRATE, ALEMBIC])
def test_a_refused_login_is_one_line_at_once(database: TestDatabase, command: tuple[str]) -> None:
    wrong = _with_login(database.admin_url, "no_such_login_3f9a", SENTINEL_PASSWORD)
    line, elapsed = _run(command, database.env(DATABASE_URL=wrong))
    assert line.startswith('cryptoetl: the database refused the login (role "no_such_login_3f9a"')
    assert "check the user name in DATABASE_URL" in line
    assert elapsed < 30, "a refused login is not worth waiting for"


@pytest.mark.parametrize("command", [WORKER_ONCE, WORKER_CHECK, MIGRATE])
def test_an_unknown_database_is_one_line(database: TestDatabase, command: tuple[str]) -> None:
    url = with_database(database.admin_url, "no_such_db_3f9a")
    line, _ = _run(command, database.env(DATABASE_URL=url))
    assert line == (
        'cryptoetl: the database does not exist (database "no_such_db_3f9a" does not exist); '
        "check the database name in DATABASE_URL, or create it"
    )


@pytest.mark.parametrize("command", [WORKER_ONCE, WORKER_CHECK])
def test_an_unmigrated_database_says_to_migrate(
    unmigrated: TestDatabase, command: tuple[str]
) -> None:
    line, _ = _run(command, unmigrated.env())
    assert line.startswith("cryptoetl: the database schema is missing or behind this version")
    assert line.endswith("; run `cryptoetl migrate`")


def test_a_database_behind_the_code_says_which_revisions(behind: TestDatabase) -> None:
    [head] = migration_heads()
    line, _ = _run(WORKER_ONCE, behind.env())
    assert line == (
        "cryptoetl: the database schema is behind this version (its revision is 0001; this "
        f"version needs {head}); run `cryptoetl migrate`"
    )
    assert query(behind, "SELECT count(*) FROM runs") == [(0,)]  # nothing ran


def test_worker_once_gives_up_on_a_database_that_is_down_within_its_bound(
    database: TestDatabase,
) -> None:
    down = via(database.admin_url, free_port())  # nothing listens there
    line, elapsed = _run(WORKER_ONCE, database.env(DATABASE_URL=down, DB_WAIT_S="3"), timeout=60)
    assert line.startswith("cryptoetl: cannot reach the database, still after 3 s (DB_WAIT_S)")
    assert "check that PostgreSQL is running at the host and port of DATABASE_URL" in line
    # It did wait (3 s), and ended within the bound plus the interpreter's start and exit.
    print(f"worker --once, DB_WAIT_S=3, database down: exit 1 after {elapsed:.1f} s")
    assert 3 <= elapsed < 3 + 20


# --------------------------------------------------------------------------- the daemon


def _events(log: Path) -> list[dict[str, object]]:
    lines = log.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def _wait_for(predicate, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def _stop(proc: asyncio.subprocess.Process) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 12)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return time.monotonic() - started


async def test_the_daemon_waits_for_a_refused_login_and_stops_on_sigterm(
    database: TestDatabase, tmp_path: Path
) -> None:
    wrong = _with_login(database.admin_url, "no_such_login_3f9a", SENTINEL_PASSWORD)
    log = tmp_path / "worker.log"
    env = database.env(DATABASE_URL=wrong, LOG_FORMAT="json", ENABLED_SOURCES="csv")
    with log.open("wb") as out:
        proc = await start_worker(env, output=out.fileno())
    try:
        await _wait_for(
            lambda: sum(e.get("event") == "database_wait" for e in _events(log)) >= 2,
            "two attempts",
        )
        assert proc.returncode is None, "the daemon keeps waiting"
    finally:
        stopped_in = await _stop(proc)
    assert proc.returncode == 0
    assert stopped_in < 10
    waits = [e for e in _events(log) if e.get("event") == "database_wait"]
    assert {(e["level"], e["kind"]) for e in waits} == {("error", "refused")}
    assert all(str(e["error"]).startswith("the database refused the login") for e in waits)
    assert SENTINEL_PASSWORD[:8] not in log.read_text()


async def test_the_daemon_carries_on_once_the_database_is_migrated(
    pg_server: str, tmp_path: Path, fixtures_dir: Path
) -> None:
    with fresh_database(pg_server, migrated=False) as db:
        log = tmp_path / "worker.log"
        env = db.env(
            LOG_FORMAT="json",
            ENABLED_SOURCES="csv",
            CSV_PATHS=str(fixtures_dir / "csv"),
            INTERVALS_S="csv=3600",
        )
        with log.open("wb") as out:
            proc = await start_worker(env, output=out.fileno())
        try:
            await _wait_for(
                lambda: any(e.get("kind") == "schema" for e in _events(log)), "the schema wait"
            )
            migrated = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "cryptoetl", "migrate"],
                env=env,
                capture_output=True,
                timeout=120,
            )
            assert migrated.returncode == 0, migrated.stderr
            await _wait_for(
                lambda: query(db, "SELECT count(*) FROM runs WHERE status = 'success'") == [(1,)],
                "a successful run after the migration",
            )
            assert proc.returncode is None
        finally:
            await _stop(proc)
        assert proc.returncode == 0
        assert "database_ready" in {e.get("event") for e in _events(log)}
