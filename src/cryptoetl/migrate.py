"""Schema migrations from the command line: wait for the database, run Alembic, check the head.

* :func:`wait_for_database` retries the first connection within a bounded time: a migration
  started together with its database (compose, a Kubernetes Job beside a database that is still
  starting) waits for it instead of failing on the first refused connection.
* :func:`run_alembic_upgrade` is ``alembic upgrade head`` with this checkout's ``alembic.ini``;
  ``migrations/env.py`` serialises concurrent upgrades with an advisory lock.
* :func:`wait_for_schema` polls until the database is at the head this code ships, so a worker or
  API pod (an init container) starts only once its migration Job has finished.
* :func:`schema_problem` says why this code cannot use a database at a given revision (behind:
  run ``cryptoetl migrate``; ahead: a newer release migrated it); the worker checks it at start.

Database problems are classified by :mod:`cryptoetl.db.errors`: the waits retry the transient
ones and raise :class:`~cryptoetl.db.errors.DatabaseTrouble` for the others, which the command
prints as one line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from cryptoetl.config import DatabaseUrl
from cryptoetl.db.errors import (
    DatabaseProblem,
    DatabaseTrouble,
    classify,
    schema_ahead,
    schema_behind,
)
from cryptoetl.db.tables import SCHEMA_REVISION
from cryptoetl.db.wait import Patience, patiently

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
CONNECT_TIMEOUT_S = 5.0
# Short first retries: a database container that is starting answers within seconds.
RETRY_S = (0.5, 1.0, 2.0, 4.0, 5.0)

log = logging.getLogger("cryptoetl.migrate")


async def wait_for_database(url: DatabaseUrl, timeout_s: float) -> None:
    """Return once a connection to ``url`` succeeds, retrying for up to ``timeout_s``.

    Raises :class:`DatabaseTrouble` after that, or at once for a problem that another try
    cannot fix (a wrong password, a missing database: see :mod:`cryptoetl.db.errors`).
    """

    async def connect() -> None:
        conn = await asyncpg.connect(url.reveal(), timeout=CONNECT_TIMEOUT_S)
        await conn.close()

    await patiently(connect, Patience(RETRY_S, bound_s=timeout_s, bound_setting="--wait"))


def run_alembic_upgrade() -> int:
    """``alembic upgrade head`` in a child process; its exit status."""
    command = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "upgrade", "head"]
    return subprocess.call(command, env=os.environ.copy())  # noqa: S603 (fixed argv)


def _scripts() -> ScriptDirectory:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Config(str(ALEMBIC_INI)))


def migration_heads() -> set[str]:
    """The head revision(s) of the migrations shipped with this code."""
    return set(_scripts().get_heads())


def schema_problem(current: set[str]) -> DatabaseProblem | None:
    """Why this code cannot use a database at Alembic revisions ``current``; None if it can."""
    if current == {SCHEMA_REVISION}:  # the usual answer, without importing Alembic (0.2 s)
        return None
    scripts = _scripts()
    heads = set(scripts.get_heads())
    if current == heads:
        return None
    unknown = current - {script.revision for script in scripts.walk_revisions()}
    return schema_ahead(unknown) if unknown else schema_behind(current, heads)


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
    """True once the database is at :func:`migration_heads`; False after ``timeout_s``.

    Waits through transient problems too; raises :class:`DatabaseTrouble` for the others (a
    refused login will not be fixed by the migration it waits for).
    """
    heads = migration_heads()
    deadline = time.monotonic() + timeout_s
    while True:
        error: str | None = None
        try:
            current = await database_revisions(url)
        except Exception as exc:
            problem = classify(exc, "API_DATABASE_URL")
            if problem is None:
                raise
            if not problem.transient:
                raise DatabaseTrouble(problem) from None
            current, error = set(), problem.line()
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
