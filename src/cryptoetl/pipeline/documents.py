"""The API representation of records, prepared when they are written.

``/data`` builds no JSON per request for what was known when a record was written: the
members that are the same for every observation of a series (its source, kind, asset, symbol,
series, quote; the asset's name as ``title``) are rendered once into ``market_series.doc``,
and a news item, which never changes without being written again, is rendered whole into
``news_items.doc`` (its mentioned assets resolved then). The API encodes only an observation's
own values and appends its series' members (:mod:`cryptoetl.api.data.render`). Everything is
compact JSON from one encoder (msgspec), so every endpoint formats JSON the same way, and both
kinds have the same keys in the same order.

Both fragments are an object's members without braces, after the item's ``"id"`` (which the
database assigns) for news, after the observation's values for a series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from cryptoetl.sources.base import NewsRecord

_encode = msgspec.json.Encoder().encode
# Sorted keys: the same metadata always gives the same text, which is what "unchanged" compares.
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def encode_metadata(metadata: Mapping[str, Any] | None) -> str | None:
    """An observation's or item's metadata as stored: compact JSON, keys sorted; None if empty."""
    return _encode_sorted(metadata).decode() if metadata else None


class AssetDoc(msgspec.Struct, frozen=True):
    id: int
    slug: str
    symbol: str
    name: str


def _json(value: Any) -> str:
    return _encode(value).decode()


def _inner(pairs: dict[str, Any]) -> str:
    """``"a":1,"b":2`` (an object's members, without the braces)."""
    return _json(pairs)[1:-1]


def series_doc(
    *,
    source_type: str,
    series_id: int,
    venue: str,
    base: str,
    symbol: str,
    quote: str | None,
    interval: str | None,
    asset: AssetDoc,
) -> str:
    """The members every observation of the series shares, in the item's key order."""
    return _inner(
        {
            "source_type": source_type,
            "kind": "market",
            "title": asset.name,
            "description": None,
            "category": None,
            "tags": [],
            "symbol": symbol,
            "url": None,
            "author": None,
            "asset": asset,
            "mentioned_assets": [],
            "series": {
                "id": series_id,
                "venue": venue,
                "base": base,
                "quote": quote,
                "interval": interval,
            },
            "quote": quote,
        }
    )


def iso_utc(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as msgspec writes timestamps (microseconds when not zero).

    The text of every ``source_timestamp`` and of the timestamp in a market ``source_id``; the
    ``records`` view writes the same text in SQL (migration 0002, tested to agree)."""
    if value.tzinfo is not UTC:  # asyncpg's timestamptz values are UTC already: skip the cost
        value = value.astimezone(UTC)
    return _encode(value)[1:-1].decode()


def news_doc(
    record: NewsRecord, timestamp: datetime, mentioned: Sequence[AssetDoc], metadata: str
) -> str:
    """A news item's members after ``"id"`` (``metadata``: its already encoded JSON), in the
    order of an observation's: its own values, then what a series would share."""
    head = _inner({"source_id": record.source_id, "source_timestamp": iso_utc(timestamp)})
    nulls = ",".join(f'"{key}":null' for key in NEWS_NULLS)
    tail = _inner(
        {
            "source_type": record.source_type,
            "kind": "news",
            "title": record.title,
            "description": record.summary,
            "category": record.category,
            "tags": list(record.tags),
            "symbol": None,
            "url": record.url,
            "author": record.author,
            "asset": None,
            "mentioned_assets": list(mentioned),
            "series": None,
            "quote": None,
        }
    )
    return f'{head},"metadata":{metadata},{nulls},{tail}}}'


# The market-only members of an item, null for news (same keys for both kinds).
NEWS_NULLS = (
    "rank",
    "price",
    "open",
    "high",
    "low",
    "volume_base",
    "volume_quote",
    "market_cap",
    "change_pct",
    "value",
    "price_usd",
    "market_cap_usd",
    "volume_24h_usd",
    "change_24h_pct",
)
