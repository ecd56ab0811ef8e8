"""Nothing the API runs can write: read-only sessions on a SELECT-only login."""

from __future__ import annotations

import asyncpg
import pytest
from litestar import Litestar

from cryptoetl.api.deps import Database
from tests.integration.api.conftest import ApiData
from tests.pg import TestDatabase

INSERT = (
    "INSERT INTO assets (slug, symbol, name, normalized_name) "
    "VALUES ('evil', 'EVIL', 'Evil', 'evil')"
)


def app_db(app: Litestar) -> Database:
    db = app.state.db
    assert isinstance(db, Database)
    return db


async def test_api_connection_is_read_only(
    api_app: Litestar, database: TestDatabase, api_data: ApiData
) -> None:
    async with app_db(api_app).connection() as conn:
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        assert await conn.fetchval("SELECT current_user") == database.reader_login
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute(INSERT)
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("DELETE FROM market_observations")


async def test_the_login_itself_cannot_write(api_app: Litestar, api_data: ApiData) -> None:
    # Even a transaction that asks for READ WRITE hits the role's missing grants.
    async with app_db(api_app).connection() as conn:
        await conn.execute("BEGIN READ WRITE")
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(INSERT)
        finally:
            await conn.execute("ROLLBACK")
    async with app_db(api_app).connection() as conn:  # the pooled connection is still usable
        assert await conn.fetchval("SELECT count(*) FROM assets WHERE slug = 'evil'") == 0
