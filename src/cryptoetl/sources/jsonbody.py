"""Shared plumbing of the JSON market APIs (CoinGecko, CoinPaprika).

Both APIs answer with a JSON array of coin objects. The rules for a body that is not one, for
validating each item on its own (one bad coin must not sink the page), and for cutting a
response into batches live here so the two sources cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from cryptoetl.sources.base import (
    Batch,
    JsonDict,
    MarketRecord,
    RawPayload,
    Record,
    Reject,
    SourceError,
)
from cryptoetl.sources.drift import detect_drift, json_kind

S = TypeVar("S", bound=msgspec.Struct)

SNIPPET_CHARS = 60
UNKNOWN_KEY = "?"

_decoder = msgspec.json.Decoder()


class ItemError(ValueError):
    """An item decoded but cannot become a record (e.g. no USD quote); becomes a Reject."""


def body_snippet(body: bytes) -> str:
    """The start of a body as readable one-line text, for error messages."""
    text = body[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    return " ".join(text.split())[:SNIPPET_CHARS]


def decode_json_items(body: bytes, *, what: str, allow_object: bool = False) -> list[Any]:
    """The items of a JSON array body; raise :class:`SourceError` for anything else.

    ``what`` names the request in messages ("coingecko page 2"). With ``allow_object`` a single
    JSON object is taken as a list of one (CoinPaprika's ``/v1/tickers/{id}`` answers that way).
    An error object (``{"error": ...}``, or ``{"status": ...}`` without an ``id``) is always
    reported as an upstream error, never taken as an item.
    """
    if not body.strip():
        raise SourceError(f"{what}: body is empty, expected a JSON array")
    try:
        decoded = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise SourceError(
            f"{what}: body is not a JSON array (starts with {body_snippet(body)!r}; {exc})"
        ) from None
    if isinstance(decoded, list):
        return decoded
    if isinstance(decoded, dict) and _is_error_object(decoded):
        detail = decoded.get("error") or decoded.get("status")
        raise SourceError(f"{what}: upstream returned an error object: {detail!r}")
    if isinstance(decoded, dict) and allow_object:
        return [decoded]
    raise SourceError(
        f"{what}: body is not a JSON array (got a JSON {json_kind(decoded)}, "
        f"starts with {body_snippet(body)!r})"
    )


def _is_error_object(obj: Mapping[str, Any]) -> bool:
    # CoinGecko: {"error": "..."}, {"status": 500, "error": ...} and on 429
    # {"status": {"error_code": 429, ...}}; CoinPaprika: {"error": "id not found"}.
    return "error" in obj or ("status" in obj and "id" not in obj)


def as_utc(value: datetime | None, default: datetime) -> datetime:
    """``value`` in UTC; a missing value is ``default``; a naive one is taken as UTC."""
    if value is None:
        value = default
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def item_key(item: Any) -> str:
    """An item's ``id`` as its raw/reject key, ``"?"`` when it has no usable id."""
    if isinstance(item, Mapping):
        key = item.get("id")
        if isinstance(key, str) and key:
            return key
    return UNKNOWN_KEY


def compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without its None entries (metadata keeps only what upstream told us)."""
    return {key: value for key, value in values.items() if value is not None}


def _items_batch(
    items: Sequence[Any],
    struct_type: type[S],
    to_record: Callable[[S], MarketRecord],
) -> Batch:
    """One raw payload per item, and a record or a reject per item (no drift, no cursor).

    ``to_record`` may raise :class:`ItemError` for rules a Struct cannot express. A coin that
    appears twice in one response is two observations of one series and timestamp: the store's
    rule for duplicates inside a batch applies to it like to any other.
    """
    batch = Batch(processed=len(items))
    records: list[Record] = []
    for item in items:
        key = item_key(item)
        batch.raw.append(RawPayload(source_key=key, payload=item))
        try:
            record = to_record(msgspec.convert(item, struct_type))
        except (msgspec.ValidationError, ItemError) as exc:
            batch.rejects.append(Reject(source_key=key, payload=item, reason=str(exc)))
            continue
        records.append(record)
    batch.records = records
    return batch


def market_batch(
    items: Sequence[Any], struct_type: type[S], to_record: Callable[[S], MarketRecord]
) -> Batch:
    """All ``items`` of one response as one batch, with their drift against ``struct_type``."""
    batch = _items_batch(items, struct_type, to_record)
    batch.drift = detect_drift(struct_type, dict_items(items))
    return batch


def market_batches(
    items: Sequence[Any],
    struct_type: type[S],
    to_record: Callable[[S], MarketRecord],
    *,
    batch_size: int,
    cursor: Callable[[int, int], JsonDict],
) -> Iterator[Batch]:
    """``items`` as batches of ``batch_size`` items; ``cursor(index, count)`` for each.

    Drift is detected once over all items and reported with the first batch only, so one
    response never stores the same drift event twice.
    """
    drift = detect_drift(struct_type, dict_items(items))
    chunks = chunked(items, batch_size)
    for index, chunk in enumerate(chunks):
        batch = _items_batch(chunk, struct_type, to_record)
        batch.drift = drift if index == 0 else []
        batch.cursor = cursor(index, len(chunks))
        yield batch


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` in slices of ``size``; an empty list gives one empty slice (one batch)."""
    if not items:
        return [items]
    step = max(1, size)
    return [items[start : start + step] for start in range(0, len(items), step)]


def dict_items(items: Sequence[Any]) -> list[Mapping[str, Any]]:
    """The JSON objects among ``items`` (what drift detection looks at)."""
    return [item for item in items if isinstance(item, Mapping)]
