"""CoinPaprika /v1/tickers: parsing (our fixture, broken bodies, odd items) and the source."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cryptoetl.config import Secret, Settings
from cryptoetl.sources.base import Batch, MarketRecord, SourceError
from cryptoetl.sources.coinpaprika import CoinPaprikaSource, parse_tickers
from cryptoetl.sources.http import HttpResponse

FETCHED_AT = datetime(2024, 11, 5, 12, 0, 30, tzinfo=UTC)

TICKER: dict[str, Any] = {
    "id": "btc-bitcoin",
    "name": "Bitcoin",
    "symbol": "BTC",
    "rank": 1,
    "circulating_supply": 19775218,
    "total_supply": 19775218,
    "max_supply": 21000000,
    "beta_value": 0.935,
    "first_data_at": "2010-07-17T00:00:00Z",
    "last_updated": "2024-11-05T12:00:00Z",
    "quotes": {
        "USD": {
            "price": 69150.12,
            "volume_24h": 38514290112.41,
            "volume_24h_change_24h": 0.13,
            "market_cap": 1367420518904,
            "market_cap_change_24h": 1.84,
            "percent_change_15m": 0.05,
            "percent_change_30m": 0.07,
            "percent_change_1h": 0.17,
            "percent_change_6h": 0.61,
            "percent_change_12h": 1.08,
            "percent_change_24h": 1.84,
            "percent_change_7d": 1.3,
            "percent_change_30d": 7.1,
            "percent_change_1y": 47.9,
            "ath_price": 73686.93,
            "ath_date": "2024-03-14T07:10:00Z",
            "percent_from_price_ath": -6.16,
        }
    },
}


def ticker(**overrides: Any) -> dict[str, Any]:
    value = copy.deepcopy(TICKER)
    value.update(overrides)
    return value


def parse(items: Any) -> Batch:
    return parse_tickers(json.dumps(items).encode(), fetched_at=FETCHED_AT)


def records(batch: Batch) -> dict[str, MarketRecord]:
    result: dict[str, MarketRecord] = {}
    for record in batch.records:
        assert isinstance(record, MarketRecord)
        result[record.base_key] = record
    return result


def test_fixture(fixtures_dir: Path) -> None:
    body = (fixtures_dir / "coinpaprika" / "tickers.json").read_bytes()
    batch = parse_tickers(body, fetched_at=FETCHED_AT)
    assert (len(batch.records), batch.rejects, batch.drift, batch.processed) == (12, [], [], 12)
    by_id = records(batch)
    assert {"btc-bitcoin", "eth-ethereum", "usdt-tether", "sol-solana"} <= set(by_id)
    btc = by_id["btc-bitcoin"]
    assert (btc.source_type, btc.coin_id, btc.symbol, btc.name, btc.rank) == (
        "coinpaprika",
        "btc-bitcoin",
        "BTC",
        "Bitcoin",
        1,
    )
    assert btc.price_usd == 69150.12
    assert btc.market_cap == 1367420518904.0
    assert btc.volume_quote == 38514290112.41
    assert btc.change_pct == 1.84
    assert btc.source_timestamp == datetime(2024, 11, 5, 12, 0, tzinfo=UTC)
    assert btc.metadata["max_supply"] == 21000000
    assert btc.metadata["percent_change_7d"] == 1.3
    # Same symbol, two different coins: identity is the id, never the symbol.
    hot = sorted(r.base_key for r in by_id.values() if r.symbol == "HOT")
    assert hot == ["hot-holo", "hot-hydro-protocol"]
    # Rank 0 means "not ranked"; newer payloads have no circulating_supply.
    assert by_id["hot-hydro-protocol"].rank is None
    assert "circulating_supply" not in by_id["link-chainlink"].metadata


def test_single_ticker_object_is_a_list_of_one() -> None:
    batch = parse_tickers(json.dumps(TICKER).encode(), fetched_at=FETCHED_AT)
    assert list(records(batch)) == ["btc-bitcoin"]
    assert batch.raw[0].source_key == "btc-bitcoin"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<!DOCTYPE html><html><title>502</title></html>", "starts with '<!DOCTYPE html>"),
        (b'[{"id":"btc-bitcoin","name":"Bitc', "not a JSON array"),
        (b"Rate limit exceeded", "'Rate limit exceeded'"),
        (b"", "body is empty"),
        (b'{"error":"id not found"}', "upstream returned an error object: 'id not found'"),
        (b'"btc-bitcoin"', "got a JSON string"),
    ],
)
def test_bodies_that_are_not_tickers(body: bytes, fragment: str) -> None:
    with pytest.raises(SourceError, match=r"^coinpaprika /v1/tickers: ") as info:
        parse_tickers(body, fetched_at=FETCHED_AT)
    assert fragment in str(info.value)


def test_ticker_without_usd_quote_is_rejected() -> None:
    eur_only = ticker(id="eth-ethereum", symbol="ETH", name="Ethereum")
    eur_only["quotes"] = {"EUR": eur_only["quotes"]["USD"]}
    no_quotes = ticker(id="sol-solana", symbol="SOL", name="Solana")
    del no_quotes["quotes"]
    batch = parse([TICKER, eur_only, no_quotes])
    assert list(records(batch)) == ["btc-bitcoin"]
    reasons = {r.source_key: r.reason for r in batch.rejects}
    assert reasons["eth-ethereum"] == "no USD quote (quotes: EUR) - at `$.quotes`"
    assert reasons["sol-solana"] == "no USD quote (quotes: none) - at `$.quotes`"


def test_wrong_typed_and_negative_values_are_rejected() -> None:
    bad_price = ticker(id="a")
    bad_price["quotes"]["USD"]["price"] = "69150.12"
    negative = ticker(id="b")
    negative["quotes"]["USD"]["price"] = -1
    bad_rank = ticker(id="c", rank="1")
    batch = parse([bad_price, negative, bad_rank, ticker()])
    assert list(records(batch)) == ["btc-bitcoin"]
    reasons = {r.source_key: r.reason for r in batch.rejects}
    assert reasons["a"] == "Expected `float`, got `str` - at `$.quotes[...].price`"
    assert reasons["b"] == "Expected `float` >= 0.0 - at `$.quotes[...].price`"
    assert reasons["c"] == "Expected `int | null`, got `str` - at `$.rank`"
    drift = {(d.field, d.change) for d in batch.drift}
    assert drift == {("rank", "type_changed"), ("quotes.*.price", "type_changed")}


def test_missing_optional_fields_are_fine_but_reported_once() -> None:
    lean = [ticker(), ticker(id="eth-ethereum")]
    for item in lean:
        del item["circulating_supply"], item["beta_value"]
    batch = parse(lean)
    assert len(batch.records) == 2
    assert sorted((d.field, d.change) for d in batch.drift) == [
        ("beta_value", "removed"),
        ("circulating_supply", "removed"),
    ]


# --------------------------------------------------------------------------- the source


class FakeHttp:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls: list[tuple[str, dict[str, str] | None, dict[str, str] | None]] = []

    async def get(
        self,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        accept_statuses: frozenset[int] = frozenset({200}),
    ) -> HttpResponse:
        self.calls.append((url, params, headers))
        return HttpResponse(url=url, status=200, headers={}, body=self.body)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": None,
        "api_database_url": None,
        "coinpaprika_base_url": "http://stub",
    }
    values.update(overrides)
    return Settings(**values)


async def collect(source: CoinPaprikaSource, batch_size: int) -> list[Batch]:
    return [batch async for batch in source.batches({}, batch_size)]


async def test_the_response_is_one_batch_whatever_the_batch_size(fixtures_dir: Path) -> None:
    """A snapshot is stored whole or not at all: one transaction for the whole response."""
    http = FakeHttp((fixtures_dir / "coinpaprika" / "tickers.json").read_bytes())
    batches = await collect(CoinPaprikaSource(settings(), http), batch_size=5)  # type: ignore[arg-type]
    assert [(len(b.records), b.processed) for b in batches] == [(12, 12)]
    assert batches[0].cursor is not None
    assert set(batches[0].cursor) == {"last_fetch"}
    url, params, headers = http.calls[0]
    assert (url, params, headers) == ("http://stub/v1/tickers", {"quotes": "USD"}, None)


async def test_source_sends_raw_key_and_reports_drift() -> None:
    lean = [ticker(id=f"c{i}") for i in range(3)]
    for item in lean:
        del item["beta_value"]
    http = FakeHttp(json.dumps(lean).encode())
    source = CoinPaprikaSource(settings(coinpaprika_api_key=Secret("pk-123")), http)  # type: ignore[arg-type]
    batches = await collect(source, batch_size=1)
    assert http.calls[0][2] == {"Authorization": "pk-123"}  # CoinPaprika: no "Bearer"
    assert [[d.field for d in b.drift] for b in batches] == [["beta_value"]]


async def test_source_empty_list_is_one_empty_batch() -> None:
    batches = await collect(CoinPaprikaSource(settings(), FakeHttp(b"[]")), batch_size=10)  # type: ignore[arg-type]
    assert len(batches) == 1
    assert batches[0].records == []
    assert batches[0].cursor is not None


async def test_source_bad_body_raises() -> None:
    source = CoinPaprikaSource(settings(), FakeHttp(b"<html>502</html>"))  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="coinpaprika /v1/tickers: body is not a JSON array"):
        await collect(source, batch_size=10)
