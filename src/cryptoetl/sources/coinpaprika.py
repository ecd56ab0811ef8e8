"""CoinPaprika ``GET /v1/tickers?quotes=USD``: every coin's ticker in one response.

The whole list is re-fetched on every run (it is a snapshot) and cut into batches of
``batch_size`` items. Supplies are optional: newer payloads may lack ``circulating_supply``.
A ticker without a USD quote cannot give a USD price and is rejected. Each coin is a series of
its own (venue ``coinpaprika``, base = CoinPaprika's coin id, quote USD, interval ``snapshot``):
every run whose ``last_updated`` moved adds an observation. As for CoinGecko, a
missing ``last_updated`` falls back to the fetch time (``metadata["timestamp_source"]``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import msgspec

from cryptoetl.config import DEFAULT_MAX_ITEMS_PER_PAGE, Settings
from cryptoetl.sources.base import SNAPSHOT, Batch, JsonDict, MarketRecord, SourceType
from cryptoetl.sources.http import HttpClient
from cryptoetl.sources.market_api import (
    ItemError,
    as_utc,
    compact,
    decode_json_items,
    market_batch,
)

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
QUOTE_CURRENCY = "USD"
WHAT = "coinpaprika /v1/tickers"
SERIES_INFO = {"venue": "source", "quote": "quotes parameter", "interval": "snapshot"}


class CoinPaprikaQuote(msgspec.Struct, frozen=True):
    """One entry of a ticker's ``quotes`` (we request USD only)."""

    price: NonNegative
    volume_24h: NonNegative | None = None
    volume_24h_change_24h: float | None = None
    market_cap: NonNegative | None = None
    market_cap_change_24h: float | None = None
    percent_change_15m: float | None = None
    percent_change_30m: float | None = None
    percent_change_1h: float | None = None
    percent_change_6h: float | None = None
    percent_change_12h: float | None = None
    percent_change_24h: float | None = None
    percent_change_7d: float | None = None
    percent_change_30d: float | None = None
    percent_change_1y: float | None = None
    ath_price: float | None = None
    ath_date: str | None = None  # metadata only: an odd format must not reject the ticker
    percent_from_price_ath: float | None = None


class CoinPaprikaTicker(msgspec.Struct, frozen=True):
    """One item of ``/v1/tickers`` (or the whole body of ``/v1/tickers/{id}``)."""

    id: NonEmptyStr
    name: NonEmptyStr
    symbol: NonEmptyStr
    rank: int | None = None  # 0 means "not ranked"
    circulating_supply: float | None = None
    total_supply: float | None = None
    max_supply: float | None = None
    beta_value: float | None = None
    first_data_at: str | None = None
    last_updated: datetime | None = None
    quotes: dict[str, CoinPaprikaQuote] = msgspec.field(default_factory=dict)


def to_market_record(ticker: CoinPaprikaTicker, fetched_at: datetime) -> MarketRecord:
    quote = ticker.quotes.get(QUOTE_CURRENCY)
    if quote is None:
        have = ", ".join(sorted(ticker.quotes)) or "none"
        raise ItemError(f"no {QUOTE_CURRENCY} quote (quotes: {have}) - at `$.quotes`")
    metadata = compact(
        {
            "circulating_supply": ticker.circulating_supply,
            "total_supply": ticker.total_supply,
            "max_supply": ticker.max_supply,
            "beta_value": ticker.beta_value,
            "first_data_at": ticker.first_data_at,
            "percent_change_1h": quote.percent_change_1h,
            "percent_change_7d": quote.percent_change_7d,
            "percent_change_30d": quote.percent_change_30d,
            "ath_price": quote.ath_price,
            "ath_date": quote.ath_date,
            "percent_from_price_ath": quote.percent_from_price_ath,
            "timestamp_source": "fetched_at" if ticker.last_updated is None else None,
        }
    )
    return MarketRecord(
        source_type="coinpaprika",
        venue="coinpaprika",
        symbol=ticker.symbol.upper(),
        quote=QUOTE_CURRENCY,
        interval=SNAPSHOT,
        coin_id=ticker.id,
        name=ticker.name,
        price=quote.price,
        market_cap=quote.market_cap,
        volume_quote=quote.volume_24h,
        change_pct=quote.percent_change_24h,
        rank=ticker.rank or None,
        source_timestamp=as_utc(ticker.last_updated, fetched_at),
        metadata=metadata,
        series_info=SERIES_INFO,
    )


def parse_tickers(
    body: bytes, *, fetched_at: datetime, max_items: int = DEFAULT_MAX_ITEMS_PER_PAGE
) -> Batch:
    """A ``/v1/tickers`` body (or one ticker object) → its batch: raw, records, rejects, drift."""
    items = decode_json_items(body, what=WHAT, allow_object=True, max_items=max_items)
    return market_batch(items, CoinPaprikaTicker, lambda t: to_market_record(t, fetched_at))


class CoinPaprikaSource:
    """One request for all tickers, yielded as batches of ``batch_size`` tickers."""

    source_type: ClassVar[SourceType] = "coinpaprika"

    def __init__(self, settings: Settings, http: HttpClient) -> None:
        self._settings = settings
        self._http = http

    def _headers(self) -> dict[str, str] | None:
        key = self._settings.coinpaprika_api_key
        # CoinPaprika's scheme is the bare key in Authorization (no "Bearer" prefix).
        return {"Authorization": key.reveal()} if key else None

    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        """The whole response as one batch (``batch_size`` does not cut a snapshot, see
        :func:`~cryptoetl.sources.market_api.market_batch`); ``cursor`` skips nothing."""
        response = await self._http.get(
            f"{self._settings.coinpaprika_base_url}/v1/tickers",
            params={"quotes": QUOTE_CURRENCY},
            headers=self._headers(),
        )
        fetched_at = datetime.now(UTC)
        batch = parse_tickers(
            response.body, fetched_at=fetched_at, max_items=self._settings.max_items_per_page
        )
        batch.cursor = {"last_fetch": fetched_at.isoformat()}
        yield batch
