"""Sentinel secrets (API keys, a database password) appear in no log line, error or stored row."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from cryptoetl.stub.server import StubHandle
from tests.e2e.conftest import SENTINEL_GECKO_KEY, SENTINEL_PAPRIKA_KEY, run_worker, worker_env
from tests.pg import TestDatabase

DB_PASSWORD = "sentinel-db-password-5d2a"


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user_host = parts.netloc.rsplit("@", 1)
    user = user_host[0].split(":", 1)[0] if len(user_host) == 2 else "postgres"
    return urlunsplit(
        (parts.scheme, f"{user}:{password}@{user_host[-1]}", parts.path, parts.query, "")
    )


def _database_text(db: TestDatabase) -> str:
    """Every row of every table, as text."""
    chunks: list[str] = []
    with psycopg.connect(db.admin_url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        for table in tables:
            for row in conn.execute(f"SELECT t::text FROM {table} t"):
                chunks.append(str(row[0]))
    return "\n".join(chunks)


async def test_sentinels_never_leak(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path
) -> None:
    # Some failures too, so error paths are covered: a 401 and an exhausted retry budget.
    stub.set_faults("/v1/tickers:401*always;/rss:503*always")
    env = worker_env(
        clean_db,
        stub,
        str(csv_dir),
        HTTP_MAX_ATTEMPTS="2",
        HTTP_MAX_WAIT_S="2",
        LOG_LEVEL="DEBUG",
        # Trust auth ignores the password, so it is a pure sentinel here.
        DATABASE_URL=_with_password(clean_db.admin_url, DB_PASSWORD),
    )
    result = await run_worker(env)
    assert result.returncode == 1  # two sources failed, on purpose
    assert '"run_failed"' in result.stdout
    sent = [r.headers for r in stub.requests]
    assert any(h.get("Authorization") == SENTINEL_PAPRIKA_KEY for h in sent)
    stored = _database_text(clean_db)
    assert "401" in stored  # the failure reason was recorded...
    for secret in (SENTINEL_PAPRIKA_KEY, SENTINEL_GECKO_KEY, DB_PASSWORD):
        assert secret not in result.stdout, secret  # ...without any secret in logs,
        assert secret not in result.stderr, secret
        assert secret not in stored, secret  # errors or stored rows.


async def test_config_error_does_not_print_the_password(clean_db: TestDatabase) -> None:
    env = clean_db.env(DATABASE_URL=f"postgresql://u:{DB_PASSWORD}@h:notaport/db")
    result = await run_worker(env)
    assert result.returncode == 2
    assert DB_PASSWORD not in result.stderr + result.stdout
