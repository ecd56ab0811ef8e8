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


class MarketRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One market observation, normalized to USD.

    ``source_id`` is the record's identity within its source: the coin id for API snapshots
    (one row per coin, updated in place) and ``SYMBOL:ISO-timestamp`` for CSV observations.
    """

    source_type: SourceType
    source_id: str
    symbol: str
    name: str | None = None
    coin_id: str | None = None  # the upstream's own id for the coin (e.g. "bitcoin", "btc-bitcoin")
    price_usd: float | None = None
    market_cap_usd: float | None = None
    volume_24h_usd: float | None = None
    change_24h_pct: float | None = None
    rank: int | None = None
    source_timestamp: datetime
    metadata: JsonDict = msgspec.field(default_factory=dict)


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
