"""Connection leases: bounded, reusable after a cancelled request, revalidated when idle."""

from __future__ import annotations

import asyncio
import contextlib

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


async def test_idle_leases_are_revalidated(
    client: Client, api_data: ApiData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every lease counts as idle too long: each request goes back through the engine's
    # pre-pinged checkout, which must be just as correct.
    monkeypatch.setattr(deps, "REVALIDATE_AFTER_IDLE_S", 0.0)
    for _ in range(3):
        assert (await client.get("/data?page_size=2")).status_code == 200
        assert (await client.get("/health")).status_code == 200
