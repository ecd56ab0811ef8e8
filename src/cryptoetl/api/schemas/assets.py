"""``/assets``, ``/assets/{id}`` and ``/assets/{id}/prices``: canonical assets in depth."""

from __future__ import annotations

from datetime import datetime

import msgspec

from cryptoetl.api.schemas.common import Meta
from cryptoetl.api.schemas.data import AssetRef, SeriesRef


class AssetListItem(msgspec.Struct, kw_only=True):
    id: int
    slug: str
    symbol: str
    name: str
    records: int


class ListPagination(msgspec.Struct, kw_only=True):
    page: int
    page_size: int
    total_records: int
    total_pages: int


class AssetListMeta(msgspec.Struct, kw_only=True):
    request_id: str
    api_latency_ms: float
    pagination: ListPagination


class AssetList(msgspec.Struct, kw_only=True):
    data: list[AssetListItem]
    metadata: AssetListMeta


class AssetMapping(msgspec.Struct, kw_only=True):
    source_type: str
    source_id: str
    symbol: str | None
    name: str | None
    method: str
    confidence: float


class SourcePrice(msgspec.Struct, kw_only=True):
    """The latest observation of one series (``price`` in its ``quote``; ``*_usd`` only when
    that quote is USD)."""

    source_type: str
    source_id: str
    series: SeriesRef
    quote: str | None
    price: float | None
    price_usd: float | None
    market_cap_usd: float | None
    volume_24h_usd: float | None
    change_24h_pct: float | None
    rank: int | None
    source_timestamp: datetime


class PriceBucket(msgspec.Struct, kw_only=True):
    """One bucket of a series, values in the series' quote currency."""

    start: datetime
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume_base: float | None  # null for snapshot series (trailing 24 h volumes do not add up)
    volume_quote: float | None
    observations: int


class PriceSeries(msgspec.Struct, kw_only=True):
    source_type: str
    series: SeriesRef
    bucket: str  # the bucket width, e.g. "1h"
    truncated: bool  # older buckets than those listed exist in the range
    buckets: list[PriceBucket]


class PriceHistory(msgspec.Struct, kw_only=True):
    asset: AssetRef
    series: list[PriceSeries]
    metadata: Meta


class NewsItem(msgspec.Struct, kw_only=True):
    id: int
    source_type: str
    source_id: str
    title: str | None
    url: str | None
    author: str | None
    category: str | None
    source_timestamp: datetime


class AssetDetail(msgspec.Struct, kw_only=True):
    asset: AssetRef
    mappings: list[AssetMapping]
    prices: list[SourcePrice]
    # (max - min) / min * 100 over the latest price per source, among those observed within
    # 24 h of the newest (older ones are listed in `prices` but are not "now")
    price_spread_pct: float | None
    recent_news: list[NewsItem]
    metadata: Meta
