"""Shared plumbing of the JSON market APIs (CoinGecko, CoinPaprika).

Both APIs answer with a JSON array of coin objects. The rules for a body that is not one, for
validating each item on its own (one bad coin must not sink the page), for how many items one
response may hold and for cutting a response into batches live here so the two sources cannot
drift apart.

A response is at most ``HTTP_MAX_BODY_BYTES`` long (the HTTP client stops reading past it), but
decoding multiplies memory by up to 25 (``[{},{},...]`` is 3 bytes per empty dict of 64), and a
page of a million tiny coins would become a million assets. So the items of the top-level array
are counted *before* decoding (:func:`array_exceeds`, a scan of the bytes that stops at the
limit) and a page with more than ``MAX_ITEMS_PER_PAGE`` is an error, naming the setting.

Errors quote the start of a body (:func:`~cryptoetl.sources.http.body_snippet`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from cryptoetl.config import DEFAULT_MAX_ITEMS_PER_PAGE
from cryptoetl.redaction import EXCERPT_CHARS, truncate
from cryptoetl.sources.base import (
    Batch,
    MarketRecord,
    RawPayload,
    Reject,
    SourceError,
)
from cryptoetl.sources.drift import detect_drift, json_kind
from cryptoetl.sources.http import body_snippet

S = TypeVar("S", bound=msgspec.Struct)

UNKNOWN_KEY = "?"

_decoder = msgspec.json.Decoder()
# Counting items: a JSON string (escapes included) or one structural character. Commas count
# only outside strings, and only at the depth of the top-level array's items.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
_ARRAY_START = re.compile(rb"\s*\[")
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")
_COMMA = ord(",")


class ItemError(ValueError):
    """An item decoded but cannot become a record (e.g. no USD quote); becomes a Reject."""


def array_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` is a JSON array of more than ``limit`` items, without decoding it.

    Fewer commas than ``limit`` settle it at C speed (every CoinGecko page). Otherwise the
    tokens are walked, one match object at a time (no copy of the body, no object per item),
    until the limit is passed. A malformed body may be miscounted; decoding it fails anyway.
    """
    if body.count(b",") < limit or _ARRAY_START.match(body) is None:
        return False
    depth = 0
    separators = 0
    for token in _JSON_TOKEN.finditer(body):
        char = body[token.start()]
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
        elif char == _COMMA and depth == 1:
            separators += 1
            if separators >= limit:  # limit + 1 items at least
                return True
    return False


def decode_json_items(
    body: bytes,
    *,
    what: str,
    allow_object: bool = False,
    max_items: int = DEFAULT_MAX_ITEMS_PER_PAGE,
) -> list[Any]:
    """The items of a JSON array body; raise :class:`SourceError` for anything else.

    ``what`` names the request in messages ("coingecko page 2"). With ``allow_object`` a single
    JSON object is taken as a list of one (CoinPaprika's ``/v1/tickers/{id}`` answers that way).
    An error object (``{"error": ...}``, or ``{"status": ...}`` without an ``id``) is always
    reported as an upstream error, never taken as an item. An array of more than ``max_items``
    (``MAX_ITEMS_PER_PAGE``) is refused before it is decoded.
    """
    if not body.strip():
        raise SourceError(f"{what}: body is empty, expected a JSON array")
    if array_exceeds(body, max_items):
        raise SourceError(
            f"{what}: the response holds more than MAX_ITEMS_PER_PAGE={max_items} items; "
            "refused without decoding it"
        )
    try:
        decoded = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise SourceError(
            f"{what}: body is not a JSON array (starts with {body_snippet(body)!r}; {exc})"
        ) from None
    if isinstance(decoded, list):
        return decoded
    if isinstance(decoded, dict) and _is_error_object(decoded):
        detail = truncate(repr(decoded.get("error") or decoded.get("status")), EXCERPT_CHARS)
        raise SourceError(f"{what}: upstream returned an error object: {detail}")
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


def market_batch(
    items: Sequence[Any], struct_type: type[S], to_record: Callable[[S], MarketRecord]
) -> Batch:
    """All ``items`` of one response as one batch: a raw payload per item, a record or a reject
    per item, and the drift of the items against ``struct_type``.

    One response is one batch (one transaction): a snapshot is stored whole or not at all, and
    a re-run fetches it whole anyway, so a checkpoint inside it would resume nothing.
    ``to_record`` may raise :class:`ItemError` for rules a Struct cannot express. A coin that
    appears twice in one response is two observations of one series and timestamp: the store's
    rule for duplicates inside a batch applies to it like to any other.
    """
    batch = Batch(processed=len(items))
    for item in items:
        key = item_key(item)
        batch.raw.append(RawPayload(source_key=key, payload=item))
        try:
            record = to_record(msgspec.convert(item, struct_type))
        except (msgspec.ValidationError, ItemError) as exc:
            batch.rejects.append(Reject(source_key=key, payload=item, reason=str(exc)))
            continue
        batch.records.append(record)
    batch.drift = detect_drift(struct_type, dict_items(items))
    return batch


def dict_items(items: Sequence[Any]) -> list[Mapping[str, Any]]:
    """The JSON objects among ``items`` (what drift detection looks at)."""
    return [item for item in items if isinstance(item, Mapping)]
