"""Connection leases: bounded, reusable after a cancelled request, revalidated when idle."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from cryptoetl.api import deps
from tests.integration.api.conftest import ApiData, sql
from tests.pg import TestDatabase

Client = httpx.AsyncClient


def api_connections(db: TestDatabase) -> int:
    return int(
        sql(
            db,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'cryptoetl-api'",
            db.name,
        )[0][0]
    )


async def test_concurrency_is_bounded_by_the_pool(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    responses = await asyncio.gather(*(client.get("/data?page_size=100") for _ in range(40)))
    assert {r.status_code for r in responses} == {200}
    assert 1 <= api_connections(database) <= deps.POOL_SIZE


async def test_cancelled_request_leaves_the_api_usable(client: Client, api_data: ApiData) -> None:
    for delay in (0, 0.001, 0.003):
        task = asyncio.create_task(client.get("/data?page_size=1000&search=bitcoin"))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert (await client.get("/data?page_size=5")).status_code == 200


async def test_api_sessions_carry_their_timeouts(api_app: Any, api_data: ApiData) -> None:
    db = api_app.state.db
    for _ in range(deps.POOL_SIZE + 1):
        async with db.connection() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "5s"
            assert await conn.fetchval("SHOW lock_timeout") == "2s"
            assert await conn.fetchval("SHOW default_transaction_read_only") == "on"


async def test_a_transaction_left_open_is_ended_on_release(api_app: Any, api_data: ApiData) -> None:
    db = api_app.state.db
    for _ in range(deps.POOL_SIZE + 1):
        async with db.connection() as conn:
            assert not conn.is_in_transaction()
            await conn.execute("BEGIN")


async def test_waiting_for_a_lent_connection_is_bounded(database: TestDatabase) -> None:
    """With every connection lent, the next request waits at most its timeout (a 503), and a
    connection returned is lent again at once."""
    from cryptoetl.api.errors import DatabaseBusy
    from cryptoetl.config import DatabaseUrl

    db = deps.Database(DatabaseUrl(database.reader_url, "API_DATABASE_URL"), pool_size=1)
    try:
        async with db.connection() as held:
            started = asyncio.get_running_loop().time()
            with pytest.raises(DatabaseBusy):
                async with db.connection(timeout=0.3):
                    pass
            assert 0.25 <= asyncio.get_running_loop().time() - started < 2
            assert await held.fetchval("SELECT 1") == 1
        for _ in range(3):
            async with db.connection(timeout=0.3) as conn:
                assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.dispose()
