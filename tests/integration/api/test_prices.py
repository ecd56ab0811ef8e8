"""GET /assets/{id}/prices: OHLC buckets computed in SQL match the same buckets computed here
from the fixture's observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.integration.api.conftest import T0, ApiData, body

Client = httpx.AsyncClient
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _bucket_start(ts: datetime, width: timedelta) -> datetime:
    return EPOCH + (ts - EPOCH) // width * width


def _expected_buckets(width: timedelta) -> list[dict[str, object]]:
    """The fixture's 30 hourly BTC candles (price only), bucketed the way the endpoint says."""
    candles = sorted((T0 - timedelta(hours=1 + k), 49_000.0 - k * 10) for k in range(30))
    grouped: dict[datetime, list[float]] = {}
    for ts, price in candles:
        grouped.setdefault(_bucket_start(ts, width), []).append(price)
    return [
        {
            "start": start.isoformat().replace("+00:00", "Z"),
            "open": prices[0],
            "high": max(prices),
            "low": min(prices),
            "close": prices[-1],
            "observations": len(prices),
        }
        for start, prices in sorted(grouped.items())
    ]


async def test_buckets_are_the_ohlc_of_their_observations(
    client: Client, api_data: ApiData
) -> None:
    answer = body(await client.get("/assets/BTC/prices?source=csv&interval=4h"))
    assert answer["asset"]["id"] == api_data.btc_id
    [series] = answer["series"]
    assert series["series"]["quote"] == "USD"
    assert series["bucket"] == "4h"
    assert series["truncated"] is False
    fields = ("start", "open", "high", "low", "close", "observations")
    got = [{k: b[k] for k in fields} for b in series["buckets"]]
    assert got == _expected_buckets(timedelta(hours=4))
    # The fixture's candles carry no volume: the sums are unknown, not zero.
    assert {(b["volume_base"], b["volume_quote"]) for b in series["buckets"]} == {(None, None)}


async def test_series_filters_select_by_quote(client: Client, api_data: ApiData) -> None:
    every = body(await client.get("/assets/bitcoin/prices"))["series"]
    assert {s["source_type"] for s in every} == {"csv", "coingecko", "coinpaprika"}
    by_quote = body(await client.get("/assets/bitcoin/prices?quote=usd"))["series"]
    assert [s["series"]["id"] for s in by_quote] == [s["series"]["id"] for s in every]
    assert body(await client.get("/assets/bitcoin/prices?quote=unknown"))["series"] == []
    too_wide = await client.get("/assets/bitcoin/prices?interval=2h&since=2025-03-02")
    assert too_wide.status_code == 400
