"""GET /assets and /assets/{id}."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api.conftest import SQLI, ApiData, body, sql
from tests.pg import TestDatabase

Client = httpx.AsyncClient


async def test_list_is_paginated(client: Client, database: TestDatabase, api_data: ApiData) -> None:
    total = int(sql(database, "SELECT count(*) FROM assets")[0][0])
    first = body(await client.get("/assets?page_size=10"))
    assert len(first["data"]) == 10
    assert first["metadata"]["pagination"] == {
        "page": 1,
        "page_size": 10,
        "total_records": total,
        "total_pages": -(-total // 10),
    }
    second = body(await client.get("/assets?page_size=10&page=2"))
    assert {a["id"] for a in first["data"]}.isdisjoint(a["id"] for a in second["data"])
    btc = next(a for a in first["data"] if a["slug"] == "bitcoin")
    assert btc["records"] == int(
        sql(database, "SELECT count(*) FROM records WHERE asset_id = %s", api_data.btc_id)[0][0]
    )


@pytest.mark.parametrize(
    ("query", "slugs"),
    [
        ("symbol=btc", {"bitcoin"}),
        ("symbol=GC1", {"gc1-geckocoin1"}),
        ("search=bitcoin", {"bitcoin", "bitcoin-cash", "wrapped-bitcoin"}),
        (
            "search=Gecko%20Coin%201",
            {"gc1-geckocoin1"} | {f"gc1{k}-geckocoin1{k}" for k in range(10)},
        ),
        ("search=%25", set()),  # '%' is a literal, not a wildcard
        ("search=_", set()),
        ("search=" + SQLI, set()),
    ],
)
async def test_list_filters(client: Client, api_data: ApiData, query: str, slugs: set[str]) -> None:
    response = await client.get(f"/assets?page_size=1000&{query}")
    assert response.status_code == 200
    page = body(response)
    assert {a["slug"] for a in page["data"]} == slugs
    assert page["metadata"]["pagination"]["total_records"] == len(slugs)


@pytest.mark.parametrize("query", ["page=0", "page_size=2000", "page_size=x"])
async def test_list_invalid(client: Client, api_data: ApiData, query: str) -> None:
    response = await client.get(f"/assets?{query}")
    assert response.status_code == 400
    assert body(response)["error"] == "invalid_parameters"


async def test_bitcoin_detail(client: Client, database: TestDatabase, api_data: ApiData) -> None:
    by_slug = body(await client.get("/assets/bitcoin"))
    by_id = body(await client.get(f"/assets/{api_data.btc_id}"))
    by_slug.pop("metadata")
    by_id.pop("metadata")
    assert by_slug == by_id
    assert by_slug["asset"] == {
        "id": api_data.btc_id,
        "slug": "bitcoin",
        "symbol": "BTC",
        "name": "Bitcoin",
    }
    mappings = {m["source_type"]: m for m in by_slug["mappings"]}
    assert set(mappings) == {"coingecko", "coinpaprika", "csv"}
    assert mappings["csv"]["method"] == "seed"
    assert mappings["csv"]["confidence"] == 0.9
    assert mappings["coingecko"]["confidence"] == 1.0
    assert mappings["coinpaprika"]["source_id"] == "btc-bitcoin"
    prices = {p["source_type"]: p for p in by_slug["prices"]}
    assert {k: p["price_usd"] for k, p in prices.items()} == {
        "coingecko": 50_000.0,
        "coinpaprika": 50_500.0,
        "csv": 49_000.0,  # latest csv row
    }
    assert prices["csv"]["source_timestamp"] == "2025-03-01T11:00:00Z"
    assert by_slug["price_spread_pct"] == pytest.approx((50_500 - 49_000) / 49_000 * 100)
    news = by_slug["recent_news"]
    expected = sql(
        database,
        "SELECT id FROM records WHERE %s = ANY(mentioned_asset_ids) "
        "ORDER BY source_timestamp DESC, id DESC LIMIT 10",
        api_data.btc_id,
    )
    assert [n["id"] for n in news] == [r[0] for r in expected]
    assert len(news) == 10
    assert all("Bitcoin" in n["title"] for n in news)


async def test_single_source_asset_has_no_spread(client: Client, api_data: ApiData) -> None:
    tether = body(await client.get("/assets/tether"))
    assert [p["source_type"] for p in tether["prices"]] == ["coingecko"]
    assert tether["price_spread_pct"] is None
    assert tether["recent_news"] == []


@pytest.mark.parametrize("asset", ["no-such-coin", "999999", "²", "१", SQLI.replace("/", "")])
async def test_unknown_asset_is_404(client: Client, api_data: ApiData, asset: str) -> None:
    response = await client.get(f"/assets/{asset}")
    assert response.status_code == 404
    payload = body(response)
    assert payload["error"] == "not_found"
    assert payload["request_id"] == response.headers["x-request-id"]


def test_spread_compares_only_current_prices() -> None:
    """A CSV history that ended long ago is listed but not compared with today's snapshots."""
    from datetime import UTC, datetime, timedelta

    from cryptoetl.api.assets import spread_pct
    from cryptoetl.api.schemas import SeriesRef, SourcePrice

    now = datetime(2026, 11, 29, 12, tzinfo=UTC)

    def price(source: str, value: float, age: timedelta, quote: str = "USD") -> SourcePrice:
        usd = quote == "USD"
        return SourcePrice(
            source_type=source,
            source_id=source,
            series=SeriesRef(id=1, venue=source, base="BTC", quote=quote, interval="1d"),
            quote=quote,
            price=value,
            price_usd=value if usd else None,
            market_cap_usd=None,
            volume_24h_usd=None,
            change_24h_pct=None,
            rank=None,
            source_timestamp=now - age,
        )

    current = [
        price("coingecko", 100.0, timedelta(0)),
        price("coinpaprika", 101.0, timedelta(hours=1)),
    ]
    stale_csv = price("csv", 40.0, timedelta(days=500))
    assert spread_pct([*current, stale_csv]) == pytest.approx(1.0)
    assert spread_pct([current[0], stale_csv]) is None
    assert spread_pct([]) is None
    # A USDT or BTC price is another unit: never part of a USD spread.
    assert spread_pct([*current, price("csv", 130.0, timedelta(0), "USDT")]) == pytest.approx(1.0)


async def test_latest_prices_name_their_records_as_data_does(
    client: Client, api_data: ApiData
) -> None:
    """The source_id of each latest price (assets.sql) is the /data item's (data/page.py)."""
    prices = body(await client.get("/assets/bitcoin"))["prices"]
    assert prices
    for price in prices:
        query = {"asset": "bitcoin", "source_type": price["source_type"], "page_size": 1000}
        items = body(await client.get("/data", params=query))["data"]
        assert len(items) < 1000  # every record of the fixture's series is on the page
        by_series = {i["source_id"] for i in items if i["series"]["id"] == price["series"]["id"]}
        assert price["source_id"] in by_series
