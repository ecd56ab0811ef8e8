"""The API against a database that is not migrated, or that refuses its login: a 503 naming
the reason on every route that reads, never a 500 (issue 13.5)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from cryptoetl.api.app import create_app
from cryptoetl.config import load_settings
from tests.integration.api.conftest import api_client, body
from tests.pg import TestDatabase, fresh_database, with_user

READING_ROUTES = ("/data", "/data?search=bitcoin", "/stats", "/runs", "/assets", "/assets/bitcoin")


@pytest.fixture(scope="module")
def unmigrated(pg_server: str) -> Iterator[TestDatabase]:
    with fresh_database(pg_server, migrated=False) as db:
        yield db


async def _client(api_url: str, db: TestDatabase) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(create_app(load_settings(db.env(API_DATABASE_URL=api_url)))) as c:
        yield c


@pytest.fixture
async def on_unmigrated(unmigrated: TestDatabase) -> AsyncIterator[httpx.AsyncClient]:
    # The superuser: the reader login does not exist before the migrations create its role.
    async for client in _client(unmigrated.admin_url, unmigrated):
        yield client


@pytest.fixture
async def refused(database: TestDatabase) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(with_user(database.reader_url, "no_such_login_3f9a"), database):
        yield client


def _clean_503(response: httpx.Response, error: str) -> dict[str, str]:
    assert response.status_code == 503, (response.request.url, response.text[:300])
    payload: dict[str, str] = body(response)
    assert payload["error"] == error
    for leak in ("Traceback", "postgresql://", "asyncpg", "relation", "no_such_login"):
        assert leak not in response.text  # fixed messages: nothing from the exception
    return payload


async def test_an_unmigrated_database_is_a_503_that_says_to_migrate(
    on_unmigrated: httpx.AsyncClient,
) -> None:
    for path in READING_ROUTES:
        payload = _clean_503(await on_unmigrated.get(path), "database_not_migrated")
        assert "run `cryptoetl migrate`" in payload["message"]
    health = await on_unmigrated.get("/health")
    assert health.status_code == 503
    assert body(health)["database_connected"] is False


async def test_a_refused_login_is_a_503_that_names_the_setting(
    refused: httpx.AsyncClient,
) -> None:
    for path in READING_ROUTES:
        payload = _clean_503(await refused.get(path), "database_refused")
        assert "API_DATABASE_URL" in payload["message"]
