"""A ``/data`` request: its parameters validated into a :class:`DataQuery`, and its cursor.

Cursor format: ``base64url(version:u8, source_timestamp_us:i64, id:i64, filter_hash:8 bytes)``,
unpadded. A cursor is bound to the filters it was issued for (the hash): reused with other
filters it is a 400, not a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from cryptoetl.api.params import ParamErrors
from cryptoetl.api.schemas import FiltersApplied
from cryptoetl.config import SOURCE_TYPES

KINDS = ("market", "news")
MARKET_SOURCES = tuple(s for s in SOURCE_TYPES if s != "rss")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Offsets make PostgreSQL walk every skipped row; past this, clients follow next_cursor.
MAX_OFFSET = 100_000
# `quote=unknown` / `interval=unknown` select the series whose source did not say.
UNKNOWN = "unknown"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = struct.Struct(">Bqq8s")
_CURSOR_VERSION = 1


@dataclass(frozen=True, slots=True)
class DataQuery:
    """A validated /data request."""

    page: int
    page_size: int
    source_types: tuple[str, ...] = ()
    kind: str | None = None
    asset: str | None = None
    venue: str | None = None
    quote: str | None = None
    interval: str | None = None
    category: str | None = None
    search: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, int] | None = None  # decoded cursor: (source_timestamp, id)

    @property
    def exact_total(self) -> bool:
        """Totals are exact for filters the kept counts cover (see the package doc)."""
        return self.category is None and self.search is None and not (self.since or self.until)

    @property
    def series_filter(self) -> bool:
        return any(v is not None for v in (self.venue, self.quote, self.interval))

    @property
    def wants_market(self) -> bool:
        sources_ok = not self.source_types or any(s in MARKET_SOURCES for s in self.source_types)
        text_filter = self.category is not None or self.search is not None
        return self.kind != "news" and sources_ok and not text_filter

    @property
    def wants_news(self) -> bool:
        sources_ok = not self.source_types or "rss" in self.source_types
        return self.kind != "market" and sources_ok and not self.series_filter

    def sources_read(self) -> frozenset[str]:
        """The sources whose commits can change this request's answer (its cache tags)."""
        sources = set(self.source_types or SOURCE_TYPES)
        if not self.wants_market:
            sources -= set(MARKET_SOURCES)
        if not self.wants_news:
            sources.discard("rss")
        return frozenset(sources)

    def filter_key(self, *, window: bool = True) -> tuple[object, ...]:
        """The filters, not the page: what totals are kept by (``window=False``: without
        ``since``/``until``, what a time-window estimate is computed from)."""
        key = (
            tuple(sorted(self.source_types)),
            self.kind,
            self.asset.lower() if self.asset else None,
            self.venue,
            self.quote,
            self.interval,
            self.category,
            self.search,
        )
        if not window:
            return key
        return (*key, self.since, self.until)

    def fingerprint(self) -> bytes:
        """What a cursor is bound to: a hash of :meth:`filter_key`."""
        since, until = self.since, self.until
        key = [
            *self.filter_key(window=False),
            since.isoformat() if since else None,
            until.isoformat() if until else None,
        ]
        return hashlib.blake2b(msgspec.json.encode(key), digest_size=8).digest()

    def filters_applied(self) -> FiltersApplied:
        return FiltersApplied(
            source_type=list(self.source_types) or None,
            kind=self.kind,
            asset=self.asset,
            venue=self.venue,
            quote=self.quote,
            interval=self.interval,
            category=self.category,
            search=self.search,
            since=self.since,
            until=self.until,
            cursor=self.after is not None,
        )


def parse_query(params: dict[str, list[str]], errors: ParamErrors | None = None) -> DataQuery:
    """Validate every parameter; one :class:`InvalidParameters` names all the bad ones (those
    already in ``errors`` too)."""
    errors = errors or ParamErrors()
    one = errors.single(params)
    page, page_size, cursor = one("page"), one("page_size"), one("cursor")
    page_n = errors.integer("page", page, 1, 1, 10**9)
    size = errors.integer("page_size", page_size, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    query = DataQuery(
        page=page_n,
        page_size=size,
        source_types=errors.choices("source_type", params.get("source_type", ()), SOURCE_TYPES),
        kind=errors.choice("kind", one("kind"), KINDS),
        asset=errors.text("asset", one("asset"), 100),
        venue=venue_filter(errors, one("venue")),
        quote=quote_filter(errors, one("quote")),
        interval=(errors.text("interval", one("interval"), 20) or "").lower() or None,
        category=errors.text("category", one("category")),
        search=errors.text("search", one("search"), 500),
        since=errors.timestamp("since", one("since")),
        until=errors.timestamp("until", one("until")),
    )
    if query.since and query.until and query.since >= query.until:
        errors.add("until", "must be later than since")
    after = None
    if cursor:
        if page not in (None, "", "1"):
            errors.add("page", "must be omitted (or 1) when cursor is given")
        after = _decode_cursor(errors, cursor, query.fingerprint())
    elif (page_n - 1) * size > MAX_OFFSET:
        errors.add("page", f"page * page_size must stay within {MAX_OFFSET} rows; use next_cursor")
    errors.raise_if_any()
    return query if after is None else dataclasses.replace(query, after=after)


def venue_filter(errors: ParamErrors, raw: str | None) -> str | None:
    """Venues are stored lowercase (``binance``, ``file:btc_daily``): the filter is any case."""
    value = errors.text("venue", raw, 100)
    return value.lower() if value is not None else None


def quote_filter(errors: ParamErrors, raw: str | None) -> str | None:
    """Quote codes are stored uppercase; ``unknown`` asks for series whose quote is not known."""
    value = errors.text("quote", raw, 20)
    if value is None:
        return None
    return UNKNOWN if value.lower() == UNKNOWN else value.upper()


def encode_cursor(ts: datetime, row_id: int, fingerprint: bytes) -> str:
    micros = (ts - _EPOCH) // timedelta(microseconds=1)
    packed = _CURSOR.pack(_CURSOR_VERSION, micros, row_id, fingerprint)
    return base64.urlsafe_b64encode(packed).rstrip(b"=").decode()


def _decode_cursor(
    errors: ParamErrors, raw: str, fingerprint: bytes
) -> tuple[datetime, int] | None:
    try:
        packed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        version, micros, row_id, bound_to = _CURSOR.unpack(packed)
        ts = _EPOCH + timedelta(microseconds=micros)
    except (binascii.Error, ValueError, struct.error, OverflowError):
        errors.add("cursor", "is not a cursor issued by this API")
        return None
    if version != _CURSOR_VERSION:
        errors.add("cursor", "is not a cursor issued by this API")
        return None
    if bound_to != fingerprint:
        errors.add("cursor", "was issued for other filters; repeat the filters it came with")
        return None
    return ts, row_id
