"""Response bodies: one msgspec Struct per JSON shape the API returns (also the OpenAPI schema).

Timestamps are aware UTC datetimes; msgspec renders them as RFC 3339 with a ``Z`` suffix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class Meta(msgspec.Struct, kw_only=True):
    """Per-request metadata carried in every JSON body (the same id as ``X-Request-ID``)."""

    request_id: str
    api_latency_ms: float


class ParameterError(msgspec.Struct, kw_only=True):
    parameter: str
    message: str


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every non-2xx JSON answer: a stable ``error`` code, a human message, the request id."""

    error: str
    message: str
    request_id: str
    detail: list[ParameterError] = msgspec.field(default_factory=list)


# --- /data ------------------------------------------------------------------------------------


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


# --- /health ----------------------------------------------------------------------------------


class RunSummary(msgspec.Struct, kw_only=True):
    id: str
    source_type: str
    status: str
    started_at: datetime
    finished_at: datetime | None


class SourceHealth(msgspec.Struct, kw_only=True):
    """One source as :mod:`cryptoetl.api.status` judges it (the dashboard shows the same)."""

    # The checkpoint's status: never_run | running | success | failed | interrupted.
    status: str
    health: Literal["healthy", "degraded", "failing", "disabled"]
    reasons: list[str]
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    records: int
    interval_s: int
    next_run_at: datetime | None
    # The upstream timestamp of the newest observation, its age, and the age past which the
    # data is stale (null: never stale, as CSV history by default).
    newest_data_at: datetime | None
    data_age_s: float | None
    freshness_s: int | None
    # Data too old, or no successful run for more than STALE_AFTER_S.
    stale: bool


class Health(msgspec.Struct, kw_only=True):
    status: Literal["healthy", "degraded", "unhealthy"]
    database_connected: bool
    etl_last_run: RunSummary | None
    etl_status: str | None
    sources: dict[str, SourceHealth]
    newest_record_at: datetime | None
    reasons: list[str]
    timestamp: datetime
    metadata: Meta


# --- /runs, /compare-runs, /stats --------------------------------------------------------------


class RunItem(msgspec.Struct, kw_only=True):
    id: str
    source_type: str
    status: str
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    processed: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    drift_events: int
    raw_stored: int
    warnings: list[str]
    error: str | None


class RunList(msgspec.Struct, kw_only=True):
    data: list[RunItem]
    metadata: Meta


class Difference(msgspec.Struct, kw_only=True):
    a: float | None
    b: float | None
    delta: float | None
    pct_change: float | None


class Anomaly(msgspec.Struct, kw_only=True):
    rule: str
    field: str
    message: str
    value: float | None = None
    expected_low: float | None = None
    expected_high: float | None = None


class Baseline(msgspec.Struct, kw_only=True):
    """History ``run_b`` is judged against (see :mod:`cryptoetl.api.anomalies`): the productive
    successful runs of its source for ``processed``, the successful runs of its own kind (no-op
    or productive) for the duration."""

    runs: int
    mean_processed: float | None
    stddev_processed: float | None
    median_duration_s: float | None
    duration_runs: int
    run_b_no_op: bool  # run_b inserted and updated nothing
    skipped: list[str]  # rules not applied to run_b, and why


class RunComparison(msgspec.Struct, kw_only=True):
    run_a: RunItem
    run_b: RunItem
    differences: dict[str, Difference]
    anomalies: list[Anomaly]
    baseline: Baseline
    metadata: Meta


class CheckpointItem(msgspec.Struct, kw_only=True):
    source_type: str
    status: str
    cursor: dict[str, Any]
    last_run_id: str | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    records_total: int
    last_run_processed: int
    updated_at: datetime


class KindCounts(msgspec.Struct, kw_only=True):
    market: int = 0
    news: int = 0
    total: int = 0


class StatsSummary(msgspec.Struct, kw_only=True):
    records_total: int
    records_by_source: dict[str, KindCounts]
    runs_total: int
    runs_failed: int
    processed_total: int
    inserted_total: int
    updated_total: int
    rejected_total: int
    drift_events_total: int
    successful_sources: list[str]
    failed_sources: list[str]


class Stats(msgspec.Struct, kw_only=True):
    checkpoints: list[CheckpointItem]
    recent_runs: list[RunItem]
    summary: StatsSummary
    metadata: Meta


# --- /assets ----------------------------------------------------------------------------------


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
