"""``/data``: one page of records (market observations and news), its pagination and filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class AssetRef(msgspec.Struct, kw_only=True):
    id: int
    slug: str
    symbol: str
    name: str


class SeriesRef(msgspec.Struct, kw_only=True):
    """The market series of an observation; ``quote``/``interval`` null: the source did not say."""

    id: int
    venue: str
    base: str
    quote: str | None
    interval: str | None


class DataItem(msgspec.Struct, kw_only=True):
    """One normalized record. ``title``/``description``/``value`` are the common view of both
    kinds (market: coin name, null, USD price; news: headline, summary, null); the typed columns
    follow for clients that want them.

    Market items carry their ``series`` and their values in its ``quote`` currency (``price``,
    ``open``, ``high``, ``low``, ``market_cap``, ``volume_quote``; ``volume_base`` in units of
    the coin). The ``*_usd`` fields are filled only when the quote is USD (a USDT, BTC or EUR
    price is never a USD price); ``volume_24h_usd``/``change_24h_pct`` only for snapshots and
    daily candles."""

    id: int
    source_type: Literal["csv", "coinpaprika", "coingecko", "rss"]
    source_id: str
    kind: Literal["market", "news"]
    title: str | None
    description: str | None
    value: float | None
    category: str | None
    tags: list[str]
    source_timestamp: datetime
    metadata: dict[str, Any]
    price_usd: float | None
    market_cap_usd: float | None
    volume_24h_usd: float | None
    change_24h_pct: float | None
    rank: int | None
    symbol: str | None
    url: str | None
    author: str | None
    asset: AssetRef | None
    mentioned_assets: list[AssetRef]
    series: SeriesRef | None
    quote: str | None
    price: float | None
    open: float | None
    high: float | None
    low: float | None
    volume_base: float | None
    volume_quote: float | None
    market_cap: float | None
    change_pct: float | None


class Pagination(msgspec.Struct, kw_only=True):
    page: int | None  # null when the page was addressed by cursor
    page_size: int
    total_records: int
    total_pages: int
    next_cursor: str | None
    total_is_estimate: bool


class FiltersApplied(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The normalized filters of the request (absent keys: filter not used)."""

    source_type: list[str] | None = None
    kind: str | None = None
    asset: str | None = None
    venue: str | None = None
    quote: str | None = None
    interval: str | None = None
    category: str | None = None
    search: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: bool = False


class DataMeta(msgspec.Struct, kw_only=True):
    request_id: str
    api_latency_ms: float
    pagination: Pagination
    filters_applied: FiltersApplied


class DataPage(msgspec.Struct, kw_only=True):
    """The documented shape of ``GET /data``."""

    data: list[DataItem]
    metadata: DataMeta


class DataEnvelope(msgspec.Struct, kw_only=True):
    """What ``GET /data`` actually encodes: ``data`` is the JSON array PostgreSQL built."""

    data: msgspec.Raw
    metadata: DataMeta
