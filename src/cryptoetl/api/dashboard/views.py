"""What the dashboard's pages show: plain data, built by :mod:`.queries`, drawn by the templates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptoetl.api.schemas import (
    Anomaly,
    AssetListItem,
    AssetMapping,
    AssetRef,
    NewsItem,
    RunItem,
    SeriesRef,
    SourcePrice,
)
from cryptoetl.api.status import SourceStatus


@dataclass(frozen=True, slots=True)
class TimelineRun:
    """One run on a source's timeline, with the anomaly rules that flagged it."""

    run: RunItem
    anomalies: tuple[Anomaly, ...] = ()
    judged_against: str | None = None  # the run it was compared with (run_a), if any


@dataclass(frozen=True, slots=True)
class SourceView:
    """One row of the sources table: the source's status and what explains it."""

    status: SourceStatus
    records: int
    last_run: RunItem | None
    last_error: str | None  # the checkpoint's, else the error of the run that last failed
    drift_since: int  # drift events and rejects of the last success and the runs after it
    rejects_since: int
    runs_since: int  # runs counted for drift_since / rejects_since
    latest_anomalies: tuple[Anomaly, ...] = ()

    @property
    def source(self) -> str:
        return self.status.source

    @property
    def health(self) -> str:
        return self.status.health


@dataclass(frozen=True, slots=True)
class TopAsset:
    id: int
    symbol: str
    name: str
    records: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    now: datetime
    overall: str
    sources: tuple[SourceView, ...]
    timelines: dict[str, tuple[TimelineRun, ...]]  # oldest first
    records_total: int
    top_assets: tuple[TopAsset, ...] = ()
    refresh_s: int = 30
    stale_after_s: int = 3600


@dataclass(frozen=True, slots=True)
class Series:
    """One market series' prices over time, oldest first, in its ``quote`` currency."""

    source: str
    points: tuple[tuple[datetime, float], ...]
    origin: str = ""
    label: str = ""  # venue base/quote interval
    quote: str | None = "USD"


def series_label(series: SeriesRef) -> str:
    """``venue base/quote interval``, ``?`` where the source did not say."""
    return f"{series.venue} {series.base}/{series.quote or '?'} {series.interval or '?'}"


@dataclass(frozen=True, slots=True)
class AssetPage:
    now: datetime
    asset: AssetRef
    mappings: Sequence[AssetMapping]
    prices: Sequence[SourcePrice]
    spread_pct: float | None
    news: Sequence[NewsItem]
    series: Sequence[Series]
    record_counts: dict[str, int] = field(default_factory=dict)
    days: int | None = None
    range_options: Sequence[int | None] = (None, 365, 90, 30, 7)
    refresh_s: int = 30


@dataclass(frozen=True, slots=True)
class AssetListPage:
    items: Sequence[AssetListItem]
    page: int
    page_size: int
    total: int
    search: str | None = None
    now: datetime | None = None
