"""Find a real PostgreSQL server for the test session and give each session its own database.

Order: ``TEST_DATABASE_URL`` when set; a testcontainers PostgreSQL when a Docker engine answers;
else an embedded server from the ``pgserver`` wheel (binaries shipped in the wheel).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TestDatabase:
    """A freshly migrated database with its own (cluster-unique) group and login roles."""

    __test__ = False  # not a test class

    admin_url: str  # superuser URL to this database
    name: str
    writer_role: str
    reader_role: str
    reader_login: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment for a cryptoetl subprocess against this database."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTOETL_", "ETL_"))}
        base.update(
            DATABASE_URL=self.admin_url,
            API_DATABASE_URL=self.reader_url,
            DB_WRITER_ROLE=self.writer_role,
            DB_READER_ROLE=self.reader_role,
        )
        base.update(self.extra_env)
        base.update(overrides)
        return base

    @property
    def reader_url(self) -> str:
        return with_user(self.admin_url, self.reader_login)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def with_user(url: str, user: str) -> str:
    """Same server and database as another login (trust or peer auth in tests)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, ""))


def _docker_answers() -> bool:
    with contextlib.suppress(Exception):
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    return False


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    """A superuser URL to some database on a running server."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="cryptoetl-pg-") as data_dir:
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
        try:
            yield server.get_uri("postgres")
        finally:
            server.cleanup()


def migrate(database_url: str, writer_role: str, reader_role: str, target: str = "head") -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DB_WRITER_ROLE": writer_role,
        "DB_READER_ROLE": reader_role,
    }
    verb = "downgrade" if target == "base" else "upgrade"
    subprocess.run(
        [sys.executable, "-m", "alembic", verb, target],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def fresh_database(server: str, *, migrated: bool = True) -> Iterator[TestDatabase]:
    """Create a database and unique roles; drop them all afterwards."""
    suffix = uuid.uuid4().hex[:10]
    name = f"cryptoetl_test_{suffix}"
    db = TestDatabase(
        admin_url=with_database(server, name),
        name=name,
        writer_role=f"cetl_w_{suffix}",
        reader_role=f"cetl_r_{suffix}",
        reader_login=f"cetl_rl_{suffix}",
    )
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        if migrated:
            migrate(db.admin_url, db.writer_role, db.reader_role)
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'CREATE ROLE "{db.reader_login}" LOGIN IN ROLE "{db.reader_role}"')
        yield db
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (db.reader_login, db.reader_role, db.writer_role):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def truncate_all(db: TestDatabase) -> None:
    """Empty every table but Alembic's (isolation between tests)."""
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


# The exact totals the writers keep (series counts and the news count triggers), which must
# always equal the rows in the tables.
KEPT_TOTAL_SQL = (
    "SELECT (SELECT coalesce(sum(observations), 0) FROM market_series) "
    "+ (SELECT coalesce(sum(n), 0) FROM news_counts WHERE asset_id = 0)"
)
