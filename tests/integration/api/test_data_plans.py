"""How ``/data`` reads under the API's generic plans: only the partitions a ``source_type``
asks for, and a series filter either way (per series or by time) with the same answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from cryptoetl.api.app import create_app
from cryptoetl.api.data import page
from cryptoetl.api.data.filters import bind, shape_of, values_of
from cryptoetl.api.data.query import parse_query
from cryptoetl.api.data.totals import total_mode
from cryptoetl.api.params import ParamErrors
from cryptoetl.config import load_settings
from tests.integration.api.conftest import ApiData, api_client
from tests.integration.api.test_data import get_page, ordered_ids, walk
from tests.pg import TestDatabase

BITCOIN = "asset_id = (SELECT id FROM assets WHERE slug = 'bitcoin')"
SERIES_FILTERS = [
    ({"asset": "bitcoin", "kind": "market"}, BITCOIN),
    ({"quote": "usd"}, "quote = 'USD'"),
    ({"venue": "testex", "interval": "1h"}, "venue = 'testex' AND interval = '1h'"),
    ({"asset": "btc", "source_type": "csv", "kind": "market"},
     f"{BITCOIN} AND source_type = 'csv'"),
]  # fmt: skip


def _literal(value: Any) -> str:
    """A bound value as SQL text (EXPLAIN EXECUTE takes no parameters); the statement's own
    casts give it its type."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


async def generic_plan(database: TestDatabase, params: dict[str, list[str]]) -> str:
    """The generic plan the API runs for a /data request, as JSON text."""
    query = parse_query(params, ParamErrors())
    statement = page.page_statement(shape_of(query, exact_total=total_mode(query, None) == "exact"))
    values = ", ".join(_literal(v) for v in bind(statement, values_of(query)))
    conn = await asyncpg.connect(
        database.reader_url, server_settings={"plan_cache_mode": "force_generic_plan"}
    )
    try:
        await conn.execute(f"PREPARE page AS {statement.sql}")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE page({values})")
    finally:
        await conn.close()
    return json.dumps(json.loads(plan))


async def test_a_source_type_reads_only_its_partition(
    database: TestDatabase, api_data: ApiData
) -> None:
    plan = await generic_plan(database, {"source_type": ["coingecko"], "until": ["2025-03-02"]})
    assert "market_observations_coingecko" in plan
    assert "market_observations_csv" not in plan
    assert "market_observations_coinpaprika" not in plan


async def test_a_few_series_are_read_on_their_own_index(
    database: TestDatabase, api_data: ApiData
) -> None:
    plan = await generic_plan(database, {"venue": ["testex"], "quote": ["USD"]})
    assert "source_type_series_id_source_timest" in plan  # the per-series index
    assert '"One-Time Filter"' in plan  # and which read runs is decided once, when it runs


@pytest.fixture(params=[0, 10**9], ids=["by time", "per series"])
def read_either_way(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setattr(page, "PER_SERIES_MAX_ROWS", request.param)
    page.page_statement.cache_clear()
    yield
    page.page_statement.cache_clear()


@pytest.mark.usefixtures("read_either_way")
@pytest.mark.parametrize(("params", "where"), SERIES_FILTERS)
async def test_series_filters_read_either_way_alike(
    database: TestDatabase, api_data: ApiData, params: Any, where: str
) -> None:
    expected = ordered_ids(database, where)
    assert expected, "a filter that selects nothing proves nothing"
    async with api_client(create_app(load_settings(database.env()))) as c:
        assert [i["id"] for i in await walk(c, page_size=2, **params)] == expected
        second = await get_page(c, page=2, page_size=2, **params)
        assert [i["id"] for i in second["data"]] == expected[2:4]
        newest = (await get_page(c, page_size=1, **params))["data"][0]["source_timestamp"]
        older = await get_page(c, page_size=100, until=newest, **params)
        cut = f"({where}) AND source_timestamp < %s::timestamptz"
        assert [i["id"] for i in older["data"]] == ordered_ids(database, cut, newest)
