"""Types that cross the boundary between a source and the pipeline.

A source turns upstream bytes into :class:`Batch` objects. The pipeline writes each batch
(raw payloads, normalized records, rejects, drift events) and the source's new checkpoint cursor
in one transaction, so a crash at any instant loses nothing and duplicates nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

import msgspec

SourceType = Literal["csv", "coinpaprika", "coingecko", "rss"]
JsonDict = dict[str, Any]

_json_encoder = msgspec.json.Encoder(order="sorted")


def canonical_json(value: Any) -> tuple[bytes, bytes]:
    """The canonical (key-sorted) JSON encoding of ``value`` and its SHA-256 (the content hash).

    For callers that store the JSON too: one encoding serves both.
    """
    encoded = _json_encoder.encode(value)
    return encoded, hashlib.sha256(encoded).digest()


def content_hash(value: Any) -> bytes:
    """SHA-256 of the canonical (key-sorted) JSON encoding of ``value``."""
    return canonical_json(value)[1]


# Interval of a series whose observations are point-in-time snapshots (an API's current price,
# updated whenever upstream's `last_updated` moves), as opposed to candles ("1h", "1d", ...).
SNAPSHOT = "snapshot"
USD = "USD"


class MarketRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One observation of one market series, in the units the source gave.

    A **series** is (source_type, venue, base, quote, interval): ``venue`` is the exchange or
    aggregator that made the price (``binance``, ``coingecko``, ``file:btc_daily`` when a CSV
    file cannot tell), the base is ``coin_id`` when the source has its own coin ids (APIs) and
    ``symbol`` otherwise, ``quote`` the currency prices are in (``USD``, ``USDT``, ``BTC``,
    ``EUR``), ``interval`` the candle length (``1h``, ``1d``) or :data:`SNAPSHOT`. ``None``
    means *unknown* (the file did not say and nothing was guessed). An observation's identity
    is its series and ``source_timestamp`` (a candle's open time).

    Units: ``price`` (the close or last price), ``open``, ``high``, ``low`` and
    ``market_cap`` are in ``quote``; ``volume_quote`` in ``quote``; ``volume_base`` in units of
    the base coin. Volumes cover the candle, or the trailing 24 h for snapshots;
    ``change_pct`` likewise. A USD price exists only where ``quote == "USD"``: a USDT- or
    BTC-quoted price is never a USD price (see README, "Units").

    ``series_info`` says how the series fields were found (e.g. ``{"venue": "file name",
    "interval": "row spacing"}``); sources share one dict per series, the store keeps it
    with the series. ``metadata`` holds per-observation extras (supplies, ATH of a snapshot).
    """

    source_type: SourceType
    venue: str
    symbol: str
    quote: str | None
    interval: str | None
    source_timestamp: datetime
    coin_id: str | None = None
    name: str | None = None
    price: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume_base: float | None = None
    volume_quote: float | None = None
    market_cap: float | None = None
    change_pct: float | None = None
    rank: int | None = None
    metadata: JsonDict | None = None
    series_info: JsonDict | None = None

    @property
    def base_key(self) -> str:
        """The source's own id for the base coin: its API id, or the ticker."""
        return self.coin_id or self.symbol

    @property
    def price_usd(self) -> float | None:
        return self.price if self.quote == USD else None


class NewsRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One news entry. ``summary`` is plain text (HTML stripped); timestamps are UTC."""

    source_type: SourceType
    source_id: str
    title: str
    summary: str | None = None
    url: str | None = None
    author: str | None = None
    tags: tuple[str, ...] = ()
    category: str | None = None
    source_timestamp: datetime | None = None
    metadata: JsonDict = msgspec.field(default_factory=dict)


# gc=False: records hold only scalars and a flat metadata dict, never cycles, so the garbage
# collector need not scan the thousands of them a batch keeps alive (about 30% of CSV parse time).
Record = MarketRecord | NewsRecord


class RawPayload(msgspec.Struct, frozen=True, kw_only=True):
    """A payload as received (JSON-compatible). ``source_key`` names where it came from."""

    source_key: str
    payload: Any


class Reject(msgspec.Struct, frozen=True, kw_only=True):
    """A record that failed validation: kept with its reason, the run goes on."""

    source_key: str
    payload: Any
    reason: str


DriftChange = Literal["added", "removed", "type_changed"]


class DriftEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A field that appeared, disappeared or changed type against the source's Struct."""

    field: str
    change: DriftChange
    expected_type: str | None = None
    observed_type: str | None = None
    candidate_field: str | None = None  # for "removed": the closest new field name, if any
    similarity: float | None = None
    sample: Any = None


class Batch(msgspec.Struct, kw_only=True):
    """What a source yields: written by the pipeline in one transaction with ``cursor``.

    ``cursor`` is the source's complete checkpoint state *after* this batch (``None`` keeps the
    previous one). ``processed`` counts upstream records looked at (valid + rejected).
    ``warnings`` are logged and stored on the run (e.g. an ill-formed feed that was recovered).
    """

    raw: list[RawPayload] = msgspec.field(default_factory=list)
    records: list[Record] = msgspec.field(default_factory=list)
    rejects: list[Reject] = msgspec.field(default_factory=list)
    drift: list[DriftEvent] = msgspec.field(default_factory=list)
    cursor: JsonDict | None = None
    processed: int = 0
    warnings: list[str] = msgspec.field(default_factory=list)


class SourceError(Exception):
    """A source run failed for a reason worth recording (bad status, bad body, bad file)."""


class Source(Protocol):
    """One upstream. ``batches`` resumes from ``cursor`` (the last committed checkpoint)."""

    source_type: ClassVar[SourceType]

    def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]: ...
