"""Shared test fixtures: paths, and (see tests/db.py) a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = REPO_ROOT / "fixtures"
CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Our own small upstream samples (written by us)."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """Genuine captured upstream responses beside the repo; tests using it skip when absent."""
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"real-world corpus not found at {CORPUS_DIR}")
    return CORPUS_DIR


# --- PostgreSQL ---------------------------------------------------------------------------------

from collections.abc import AsyncIterator, Iterator  # noqa: E402

from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from cryptoetl.config import DatabaseUrl  # noqa: E402
from cryptoetl.db.engine import make_engine  # noqa: E402
from tests.pg import TestDatabase, fresh_database, server_url, truncate_all  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Superuser URL of a real PostgreSQL server (see tests/pg.py for how it is found)."""
    with server_url() as url:
        yield url


@pytest.fixture(scope="session")
def database(pg_server: str) -> Iterator[TestDatabase]:
    """This session's own database, migrated to head with Alembic."""
    with fresh_database(pg_server) as db:
        yield db


@pytest.fixture(scope="session")
async def engine(database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(DatabaseUrl(database.admin_url, "TEST_DATABASE_URL"))
    yield eng
    await eng.dispose()


@pytest.fixture
def clean_db(database: TestDatabase) -> TestDatabase:
    """Isolation: every test that writes starts from empty tables."""
    truncate_all(database)
    return database
