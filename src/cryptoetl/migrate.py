"""Schema migrations from the command line: wait for the database, run Alembic, check the head.

* :func:`wait_for_database` retries the first connection within a bounded time: a migration
  started together with its database (compose, a Kubernetes Job beside a database that is still
  starting) waits for it instead of failing on the first refused connection.
* :func:`run_alembic_upgrade` is ``alembic upgrade head`` with this checkout's ``alembic.ini``;
  ``migrations/env.py`` serialises concurrent upgrades with an advisory lock.
* :func:`wait_for_schema` polls until the database is at the head this code ships, so a worker or
  API pod (an init container) starts only once its migration Job has finished.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from cryptoetl.config import DatabaseUrl

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 5.0
CONNECT_TIMEOUT_S = 5.0

log = logging.getLogger("cryptoetl.migrate")

# Worth another try: nothing listens yet, the server is starting or recovering, or it is full.
_TRANSIENT: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


class DatabaseUnreachable(RuntimeError):
    """No connection: the message says why (it never contains the URL's password)."""


async def wait_for_database(url: DatabaseUrl, timeout_s: float) -> None:
    """Return once a connection to ``url`` succeeds, retrying for up to ``timeout_s``.

    Raises :class:`DatabaseUnreachable` after that, or at once for an error that another try
    cannot fix (a wrong password, a missing database).
    """
    deadline = time.monotonic() + timeout_s
    delay = FIRST_RETRY_S
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        try:
            conn = await asyncpg.connect(
                url.reveal(), timeout=max(0.1, min(CONNECT_TIMEOUT_S, remaining))
            )
        except _TRANSIENT as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error(
                    "database not reachable",
                    extra={"event": "database_unreachable", "attempts": attempt, "error": str(exc)},
                )
                raise DatabaseUnreachable(
                    f"the database did not answer within {timeout_s:.0f} s"
                ) from None
            log.info(
                "database not reachable yet, retrying",
                extra={
                    "event": "database_wait",
                    "attempt": attempt,
                    "error": f"{type(exc).__name__}: {exc}",
                    "retry_in_s": round(min(delay, remaining), 2),
                },
            )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_RETRY_S)
            continue
        except asyncpg.PostgresError as exc:  # after _TRANSIENT, whose two are PostgresErrors
            raise DatabaseUnreachable(f"the database refused the connection: {exc}") from None
        await conn.close()
        if attempt > 1:
            log.info("database reachable", extra={"event": "database_ready", "attempts": attempt})
        return


def run_alembic_upgrade() -> int:
    """``alembic upgrade head`` in a child process; its exit status."""
    command = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "upgrade", "head"]
    return subprocess.call(command, env=os.environ.copy())  # noqa: S603 (fixed argv)


def migration_heads() -> set[str]:
    """The head revision(s) of the migrations shipped with this code."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_heads())


async def database_revisions(url: DatabaseUrl) -> set[str]:
    """The revision(s) the database is at (empty before the first migration)."""
    conn = await asyncpg.connect(url.reveal(), timeout=CONNECT_TIMEOUT_S)
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()
    return {str(row["version_num"]) for row in rows}


async def wait_for_schema(url: DatabaseUrl, timeout_s: float, poll_s: float = 2.0) -> bool:
    """True once the database is at :func:`migration_heads`; False after ``timeout_s``."""
    heads = migration_heads()
    deadline = time.monotonic() + timeout_s
    while True:
        error: str | None = None
        try:
            current = await database_revisions(url)
        except _TRANSIENT as exc:
            current, error = set(), f"{type(exc).__name__}: {exc}"
        except asyncpg.PostgresError as exc:
            raise DatabaseUnreachable(f"the database refused the connection: {exc}") from None
        else:
            if current == heads:
                log.info("schema at head", extra={"event": "schema_ready", "heads": sorted(heads)})
                return True
        if time.monotonic() + poll_s > deadline:
            log.error(
                "schema not at head",
                extra={
                    "event": "schema_not_ready",
                    "expected": sorted(heads),
                    "found": sorted(current),
                    "error": error,
                },
            )
            return False
        log.info(
            "waiting for the migration",
            extra={"event": "schema_wait", "expected": sorted(heads), "found": sorted(current)},
        )
        await asyncio.sleep(poll_s)
