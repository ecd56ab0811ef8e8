"""The API's contract as a new user meets it: typos are errors, symbols are found, an asset
brings its news, totals say when they are exact, and every endpoint writes JSON alike."""

from __future__ import annotations

import re

import httpx

from tests.integration.api.conftest import ApiData, body

Client = httpx.AsyncClient


async def test_an_unknown_parameter_is_a_400_naming_it(client: Client, api_data: ApiData) -> None:
    response = await client.get("/data?source=csv&page_size=5")
    assert response.status_code == 400
    detail = body(response)["detail"]
    assert [d["parameter"] for d in detail] == ["source"]
    assert "source_type" in detail[0]["message"]  # it lists the known ones
    both = await client.get("/data?source=csv&page_size=0")
    assert [d["parameter"] for d in body(both)["detail"]] == ["source", "page_size"]  # one 400
    prices = await client.get("/assets/bitcoin/prices?bucket=1h")
    assert prices.status_code == 400
    assert [d["parameter"] for d in body(prices)["detail"]] == ["bucket"]


async def test_a_symbol_finds_its_asset(client: Client, api_data: ApiData) -> None:
    by_symbol = body(await client.get("/assets/BTC"))
    assert by_symbol["asset"]["id"] == api_data.btc_id
    assert body(await client.get("/assets/btc"))["asset"]["slug"] == "bitcoin"
    missing = await client.get("/assets/NOSUCHCOIN")
    assert missing.status_code == 404
    assert "/assets?search=" in body(missing)["message"]  # says how to look it up


async def test_asset_filter_brings_the_news_that_mention_it(
    client: Client, api_data: ApiData
) -> None:
    detail = body(await client.get("/assets/bitcoin"))
    news = body(await client.get("/data?asset=bitcoin&kind=news&page_size=100"))
    assert news["data"], "the fixture has news that mention Bitcoin"
    assert {n["id"] for n in detail["recent_news"]} <= {n["id"] for n in news["data"]}
    assert all(
        any(a["slug"] == "bitcoin" for a in item["mentioned_assets"]) for item in news["data"]
    )
    assert news["metadata"]["pagination"]["total_is_estimate"] is False
    assert news["metadata"]["pagination"]["total_records"] == len(news["data"])


async def test_every_endpoint_writes_compact_json(client: Client, api_data: ApiData) -> None:
    """One encoder's style everywhere: no spaces after separators (PostgreSQL's json output
    would write ``"id" : 1``), whatever the endpoint."""
    for path in (
        "/data?page_size=20",
        "/data?kind=news&page_size=5",
        "/assets/bitcoin",
        "/assets/bitcoin/prices",
        "/runs?limit=3",
        "/stats?limit=3",
        "/health",
    ):
        text = (await client.get(path)).text
        outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
        assert ": " not in outside_strings, path
        assert ", " not in outside_strings, path
