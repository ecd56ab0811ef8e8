"""CoinGecko ``GET /coins/markets``: a market snapshot of the top coins, page by page.

Each run re-fetches the configured pages completely (a snapshot has no "since" parameter); the
cursor only records how far the run got. Every item is validated on its own, so one malformed
coin becomes a reject and the rest of the page is kept.

Each coin is a series of its own (venue ``coingecko``, base = CoinGecko's coin id, quote USD,
interval ``snapshot``): every run whose ``last_updated`` moved adds an observation, an
unchanged coin costs nothing. ``high``/``low`` are CoinGecko's 24 h high and low, ``volume_quote``
its 24 h total volume in USD, ``change_pct`` the 24 h price change.

``last_updated`` may be missing or null for coins CoinGecko has stopped tracking; such a coin is
still a valid observation as of the fetch, so its ``source_timestamp`` is the fetch time and
``metadata["timestamp_source"]`` says ``"fetched_at"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import msgspec

from cryptoetl.config import DEFAULT_MAX_ITEMS_PER_PAGE, Settings
from cryptoetl.sources.base import SNAPSHOT, Batch, JsonDict, MarketRecord, SourceType
from cryptoetl.sources.http import HttpClient
from cryptoetl.sources.market_api import as_utc, compact, decode_json_items, market_batch

VS_CURRENCY = "usd"  # prices, caps and volumes are requested in USD
SERIES_INFO = {"venue": "source", "quote": "vs_currency", "interval": "snapshot"}
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class CoinGeckoRoi(msgspec.Struct, frozen=True):
    times: float | None = None
    currency: str | None = None
    percentage: float | None = None


class CoinGeckoMarket(msgspec.Struct, frozen=True):
    """One item of ``/coins/markets``; only id, symbol and name are required."""

    id: NonEmptyStr
    symbol: NonEmptyStr
    name: NonEmptyStr
    # Prices, caps and volumes can be null for illiquid coins, never negative.
    current_price: NonNegative | None = None
    market_cap: NonNegative | None = None
    market_cap_rank: int | None = None
    total_volume: NonNegative | None = None
    price_change_percentage_24h: float | None = None
    last_updated: datetime | None = None
    image: str | None = None
    fully_diluted_valuation: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    price_change_24h: float | None = None
    market_cap_change_24h: float | None = None
    market_cap_change_percentage_24h: float | None = None
    circulating_supply: float | None = None
    total_supply: float | None = None
    max_supply: float | None = None
    ath: float | None = None
    ath_change_percentage: float | None = None
    # Dates we only pass on as metadata stay strings: an odd format must not reject the coin.
    ath_date: str | None = None
    atl: float | None = None
    atl_change_percentage: float | None = None
    atl_date: str | None = None
    roi: CoinGeckoRoi | None = None


def to_market_record(coin: CoinGeckoMarket, fetched_at: datetime) -> MarketRecord:
    metadata = compact(
        {
            "image": coin.image,
            "price_change_24h": coin.price_change_24h,
            "circulating_supply": coin.circulating_supply,
            "total_supply": coin.total_supply,
            "max_supply": coin.max_supply,
            "fully_diluted_valuation": coin.fully_diluted_valuation,
            "ath": coin.ath,
            "ath_date": coin.ath_date,
            "atl": coin.atl,
            "atl_date": coin.atl_date,
            "timestamp_source": "fetched_at" if coin.last_updated is None else None,
        }
    )
    return MarketRecord(
        source_type="coingecko",
        venue="coingecko",
        symbol=coin.symbol.upper(),
        quote=VS_CURRENCY.upper(),
        interval=SNAPSHOT,
        coin_id=coin.id,
        name=coin.name,
        price=coin.current_price,
        high=coin.high_24h,
        low=coin.low_24h,
        market_cap=coin.market_cap,
        volume_quote=coin.total_volume,
        change_pct=coin.price_change_percentage_24h,
        rank=coin.market_cap_rank,
        source_timestamp=as_utc(coin.last_updated, fetched_at),
        metadata=metadata,
        series_info=SERIES_INFO,
    )


def _what(page: int | None) -> str:
    return "coingecko /coins/markets" if page is None else f"coingecko page {page}"


def parse_markets_page(
    body: bytes,
    *,
    fetched_at: datetime,
    page: int | None = None,
    max_items: int = DEFAULT_MAX_ITEMS_PER_PAGE,
) -> Batch:
    """One ``/coins/markets`` body → its batch: raw payloads, records, rejects, drift.

    Raises :class:`SourceError` when the body is not a JSON array (``page`` names it).
    """
    items = decode_json_items(body, what=_what(page), max_items=max_items)
    return market_batch(items, CoinGeckoMarket, lambda coin: to_market_record(coin, fetched_at))


class CoinGeckoSource:
    """Fetches ``settings.coingecko_pages`` pages of ``settings.coingecko_per_page`` coins."""

    source_type: ClassVar[SourceType] = "coingecko"

    def __init__(self, settings: Settings, http: HttpClient) -> None:
        self._settings = settings
        self._http = http

    def _headers(self) -> dict[str, str] | None:
        key = self._settings.coingecko_api_key
        # The demo plan's header; the key is revealed here only, never logged.
        return {"x-cg-demo-api-key": key.reveal()} if key else None

    async def _fetch_page(self, page: int) -> bytes:
        response = await self._http.get(
            f"{self._settings.coingecko_base_url}/coins/markets",
            params={
                "vs_currency": VS_CURRENCY,
                "order": "market_cap_desc",
                "per_page": str(self._settings.coingecko_per_page),
                "page": str(page),
            },
            headers=self._headers(),
        )
        return response.body

    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        """One batch per page (``batch_size`` does not cut a snapshot, see
        :func:`~cryptoetl.sources.market_api.market_batch`).

        ``cursor`` is not used to skip pages: a snapshot must be complete on every run.
        """
        pages = self._settings.coingecko_pages
        for page in range(1, pages + 1):
            batch = parse_markets_page(
                await self._fetch_page(page),
                fetched_at=datetime.now(UTC),
                page=page,
                max_items=self._settings.max_items_per_page,
            )
            batch.cursor = {"last_page": page, "pages": pages}
            yield batch
            # A short page is the last one: asking for the next would only spend rate limit.
            if batch.processed < self._settings.coingecko_per_page:
                return
