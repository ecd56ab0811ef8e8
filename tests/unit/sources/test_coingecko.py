"""CoinGecko /coins/markets: page parsing (our fixtures, broken bodies) and the source."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cryptoetl.config import Secret, Settings
from cryptoetl.sources.base import Batch, MarketRecord, SourceError
from cryptoetl.sources.coingecko import CoinGeckoSource, parse_markets_page
from cryptoetl.sources.http import HttpResponse, UpstreamError

FETCHED_AT = datetime(2024, 11, 5, 12, 0, 30, tzinfo=UTC)


def page(fixtures_dir: Path, n: int) -> bytes:
    return (fixtures_dir / "coingecko" / f"markets_page_{n}.json").read_bytes()


def parse(items: Any) -> Batch:
    return parse_markets_page(json.dumps(items).encode(), fetched_at=FETCHED_AT)


def records(batch: Batch) -> dict[str, MarketRecord]:
    result: dict[str, MarketRecord] = {}
    for record in batch.records:
        assert isinstance(record, MarketRecord)
        result[record.base_key] = record
    return result


def item(**overrides: Any) -> dict[str, Any]:
    """A complete /coins/markets item (every documented field, so no drift by default)."""
    base: dict[str, Any] = {
        "id": "bitcoin",
        "symbol": "btc",
        "name": "Bitcoin",
        "image": "https://coin-images.coingecko.com/coins/images/1/large/bitcoin.png",
        "current_price": 69163,
        "market_cap": 1368224918122,
        "market_cap_rank": 1,
        "fully_diluted_valuation": 1452542116540,
        "total_volume": 38991201772,
        "high_24h": 70615.42,
        "low_24h": 66949.78,
        "price_change_24h": 1263.6,
        "price_change_percentage_24h": 1.86112,
        "market_cap_change_24h": 24997772110.5,
        "market_cap_change_percentage_24h": 1.87973,
        "circulating_supply": 19775218.0,
        "total_supply": 21000000.0,
        "max_supply": 21000000.0,
        "ath": 73738,
        "ath_change_percentage": -6.20,
        "ath_date": "2024-03-14T07:10:36.635Z",
        "atl": 67.81,
        "atl_change_percentage": 101895.1,
        "atl_date": "2013-07-06T00:00:00.000Z",
        "roi": None,
        "last_updated": "2024-11-05T11:50:50.850Z",
    }
    base.update(overrides)
    return base


# --------------------------------------------------------------------------- our fixtures


def test_page_1_fixture(fixtures_dir: Path) -> None:
    batch = parse_markets_page(page(fixtures_dir, 1), fetched_at=FETCHED_AT)
    assert (len(batch.records), batch.rejects, batch.drift, batch.processed) == (10, [], [], 10)
    assert [raw.source_key for raw in batch.raw][:4] == ["bitcoin", "ethereum", "tether", "solana"]
    btc = records(batch)["bitcoin"]
    assert btc.source_type == "coingecko"
    assert (btc.coin_id, btc.symbol, btc.name, btc.rank) == ("bitcoin", "BTC", "Bitcoin", 1)
    assert btc.price_usd == 69163.0
    assert btc.market_cap == 1368224918122.0
    assert btc.volume_quote == 38991201772.0
    assert btc.change_pct == pytest.approx(1.86112)
    assert btc.source_timestamp == datetime(2024, 11, 5, 11, 50, 50, 850000, tzinfo=UTC)
    assert btc.metadata["max_supply"] == 21000000.0
    assert btc.metadata["image"].startswith("https://coin-images.coingecko.com/")
    assert "roi" not in btc.metadata
    assert "timestamp_source" not in btc.metadata
    assert batch.raw[0].payload["current_price"] == 69163


def test_page_2_fixture_has_two_coins_sharing_a_symbol(fixtures_dir: Path) -> None:
    batch = parse_markets_page(page(fixtures_dir, 2), fetched_at=FETCHED_AT)
    assert (len(batch.records), batch.rejects, batch.drift) == (10, [], [])
    hot = {r.base_key: r for r in records(batch).values() if r.symbol == "HOT"}
    assert set(hot) == {"holotoken", "hydro-protocol-2"}
    assert hot["holotoken"].name != hot["hydro-protocol-2"].name
    inactive = hot["hydro-protocol-2"]
    assert (inactive.rank, inactive.market_cap) == (None, 0.0)


# --------------------------------------------------------------------------- broken bodies


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "starts with '<html><body>"),
        (b'[{"id": "bitcoin", "symbol": "btc", "na', "not a JSON array"),
        (b"Rate limit exceeded", "starts with 'Rate limit exceeded'"),
        (b"", "body is empty"),
        (b"  \n", "body is empty"),
        (b'{"error":"Missing parameter vs_currency"}', "'Missing parameter vs_currency'"),
        (b'{"status":{"error_code":429,"error_message":"rate"}}', "error object"),
        (b'{"id": "bitcoin"}', "got a JSON object"),
        (b"42", "got a JSON integer"),
    ],
)
def test_bodies_that_are_not_a_json_array(body: bytes, fragment: str) -> None:
    with pytest.raises(SourceError, match=r"^coingecko page 2: ") as info:
        parse_markets_page(body, fetched_at=FETCHED_AT, page=2)
    assert fragment in str(info.value)


def test_empty_array_is_an_empty_batch() -> None:
    batch = parse_markets_page(b"[]", fetched_at=FETCHED_AT)
    assert (batch.records, batch.raw, batch.rejects, batch.processed) == ([], [], [], 0)


# --------------------------------------------------------------------------- item validation


def test_wrong_typed_item_is_rejected_and_reported_as_drift() -> None:
    batch = parse([item(), item(id="ethereum", symbol="eth", current_price="2431.92")])
    assert list(records(batch)) == ["bitcoin"]
    [reject] = batch.rejects
    assert reject.source_key == "ethereum"
    assert reject.reason == "Expected `float | null`, got `str` - at `$.current_price`"
    assert reject.payload["current_price"] == "2431.92"
    assert [(d.field, d.change, d.observed_type) for d in batch.drift] == [
        ("current_price", "type_changed", "string")
    ]
    assert len(batch.raw) == batch.processed == 2


@pytest.mark.parametrize(
    ("bad", "key", "reason"),
    [
        (42, "?", "Expected `object`, got `int`"),
        ({"symbol": "btc", "name": "Bitcoin"}, "?", "missing required field `id`"),
        (item(id=""), "?", "Expected `str` of length >= 1 - at `$.id`"),
        (item(current_price=-1.5), "bitcoin", "Expected `float` >= 0.0 - at `$.current_price`"),
        (item(market_cap=-10), "bitcoin", "at `$.market_cap`"),
        (item(last_updated="yesterday"), "bitcoin", "Invalid RFC3339 encoded datetime"),
    ],
)
def test_invalid_items_are_rejected(bad: Any, key: str, reason: str) -> None:
    batch = parse([bad, item(id="ethereum", symbol="eth", name="Ethereum")])
    assert list(records(batch)) == ["ethereum"]
    [reject] = batch.rejects
    assert reject.source_key == key
    assert reason in reject.reason
    assert [raw.source_key for raw in batch.raw] == [key, "ethereum"]


def test_renamed_field_is_drift_and_items_still_load() -> None:
    renamed = item()
    renamed["currentPrice"] = renamed.pop("current_price")
    batch = parse([renamed])
    assert records(batch)["bitcoin"].price_usd is None
    drift = {(d.field, d.change): d for d in batch.drift}
    assert set(drift) == {("currentPrice", "added"), ("current_price", "removed")}
    assert drift["current_price", "removed"].candidate_field == "currentPrice"
    assert drift["current_price", "removed"].similarity == 1.0


def test_missing_last_updated_uses_fetch_time() -> None:
    missing = item()
    del missing["last_updated"]
    record = records(parse([missing, item(id="x", last_updated=None)]))
    assert record["bitcoin"].source_timestamp == FETCHED_AT
    assert record["bitcoin"].metadata["timestamp_source"] == "fetched_at"
    assert record["x"].source_timestamp == FETCHED_AT


def test_naive_timestamp_is_taken_as_utc() -> None:
    record = records(parse([item(last_updated="2024-11-05T11:50:50")]))["bitcoin"]
    assert record.source_timestamp == datetime(2024, 11, 5, 11, 50, 50, tzinfo=UTC)


def test_null_market_fields_are_kept_as_none() -> None:
    record = records(
        parse([item(current_price=None, market_cap=None, total_volume=None, market_cap_rank=None)])
    )["bitcoin"]
    assert (record.price_usd, record.market_cap, record.volume_quote, record.rank) == (
        None,
        None,
        None,
        None,
    )


def test_duplicate_id_in_one_page_is_left_to_the_stores_rule() -> None:
    """Two items of one coin are two observations of one series and timestamp: the store's one
    rule for duplicates inside a batch (the later wins) applies, as for every source."""
    batch = parse([item(), item(current_price=1)])
    assert [r.price for r in batch.records] == [69163.0, 1]
    assert not batch.rejects


# --------------------------------------------------------------------------- the source


class FakeHttp:
    """Answers GETs from a page-number -> body map and records each request."""

    def __init__(self, pages: dict[int, bytes]) -> None:
        self.pages = pages
        self.calls: list[tuple[str, dict[str, str], dict[str, str] | None]] = []

    async def get(
        self,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        accept_statuses: frozenset[int] = frozenset({200}),
    ) -> HttpResponse:
        assert params is not None
        self.calls.append((url, params, headers))
        body = self.pages.get(int(params["page"]), b"[]")
        if body.startswith(b"!"):
            raise UpstreamError(f"GET {url}: HTTP 500 Internal Server Error")
        return HttpResponse(url=url, status=200, headers={}, body=body)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": None,
        "api_database_url": None,
        "coingecko_base_url": "http://stub/api/v3",
        "coingecko_pages": 3,
        "coingecko_per_page": 2,
    }
    values.update(overrides)
    return Settings(**values)


def two(first: str, second: str) -> bytes:
    return msgspec.json.encode([item(id=first), item(id=second)])


async def collect(source: CoinGeckoSource, batch_size: int = 100) -> list[Batch]:
    return [batch async for batch in source.batches({}, batch_size)]


async def drain(source: CoinGeckoSource, seen: list[Batch]) -> None:
    async for batch in source.batches({}, 100):
        seen.append(batch)


async def test_source_requests_every_page_with_params_and_cursor() -> None:
    http = FakeHttp({1: two("a", "b"), 2: two("c", "d"), 3: two("e", "f")})
    batches = await collect(CoinGeckoSource(settings(), http))  # type: ignore[arg-type]
    assert [b.cursor for b in batches] == [
        {"last_page": 1, "pages": 3},
        {"last_page": 2, "pages": 3},
        {"last_page": 3, "pages": 3},
    ]
    assert [r.base_key for b in batches for r in b.records] == ["a", "b", "c", "d", "e", "f"]
    url, params, headers = http.calls[0]
    assert url == "http://stub/api/v3/coins/markets"
    assert params == {
        "vs_currency": "usd",
        "order": "market_cap_desc",
        "per_page": "2",
        "page": "1",
    }
    assert headers is None


async def test_source_sends_demo_key_header() -> None:
    http = FakeHttp({1: b"[]"})
    source = CoinGeckoSource(settings(coingecko_api_key=Secret("CG-demo-key")), http)  # type: ignore[arg-type]
    await collect(source)
    assert http.calls[0][2] == {"x-cg-demo-api-key": "CG-demo-key"}


async def test_source_stops_at_empty_or_short_page() -> None:
    http = FakeHttp({1: two("a", "b"), 2: msgspec.json.encode([item(id="c")])})
    batches = await collect(CoinGeckoSource(settings(coingecko_pages=5), http))  # type: ignore[arg-type]
    assert len(http.calls) == 2
    assert batches[-1].cursor == {"last_page": 2, "pages": 5}

    http = FakeHttp({})
    batches = await collect(CoinGeckoSource(settings(), http))  # type: ignore[arg-type]
    assert len(http.calls) == 1
    assert [(b.records, b.cursor) for b in batches] == [([], {"last_page": 1, "pages": 3})]


async def test_a_page_is_one_batch_whatever_the_batch_size() -> None:
    """A snapshot page is stored whole or not at all (one transaction), drift reported once."""
    body = msgspec.json.encode([item(id=c, extra_field=1) for c in "abcde"])
    http = FakeHttp({1: body})
    source = CoinGeckoSource(settings(coingecko_pages=1, coingecko_per_page=5), http)  # type: ignore[arg-type]
    batches = await collect(source, batch_size=2)
    assert [len(b.records) for b in batches] == [5]
    assert [len(b.drift) for b in batches] == [1]
    assert [b.cursor for b in batches] == [{"last_page": 1, "pages": 1}]


async def test_source_errors_propagate() -> None:
    http = FakeHttp({1: two("a", "b"), 2: b"<html>oops</html>"})
    source = CoinGeckoSource(settings(), http)  # type: ignore[arg-type]
    seen: list[Batch] = []
    with pytest.raises(SourceError, match="coingecko page 2: body is not a JSON array"):
        await drain(source, seen)
    assert len(seen) == 1

    http = FakeHttp({1: b"!"})
    with pytest.raises(UpstreamError):
        await collect(CoinGeckoSource(settings(), http))  # type: ignore[arg-type]
