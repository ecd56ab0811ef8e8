"""One feed entry: its fields (without feedparser's aliases), identity, title, summary, tags
and date, the JSON-safe raw payload we store, and :func:`entry_to_record`."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

from cryptoetl.sources.base import JsonDict, NewsRecord
from cryptoetl.sources.rss.text import (
    SUMMARY_MAX_CHARS,
    collapse_whitespace,
    detail_text,
    truncate,
)

TITLE_FROM_SUMMARY_WORDS = 12
TITLE_MAX_CHARS = 300
IDENTITY_MAX_CHARS = 500
# A date this far after the fetch is a broken clock or time zone, not news from the future.
FUTURE_TOLERANCE = timedelta(days=1)
RAW_ENTRY_KEYS = (
    "id",
    "title",
    "link",
    "summary",
    "content",
    "published",
    "updated",
    "author",
    "authors",
    "tags",
)
_WEB_SCHEMES = frozenset({"http", "https"})


class EntryError(ValueError):
    """An entry that cannot become a news record; it becomes a Reject."""


def field(entry: Mapping[str, Any], key: str) -> Any:
    """``entry[key]`` or None, without feedparser's legacy key aliases.

    feedparser's dict maps e.g. a missing ``updated_parsed`` to ``published_parsed`` (with a
    DeprecationWarning); we want exactly the fields the feed carried.
    """
    if isinstance(entry, dict):
        return dict.get(entry, key)
    return entry.get(key)


def struct_time_to_utc(value: Any) -> datetime | None:
    """A feedparser ``*_parsed`` value (a UTC ``time.struct_time``) as an aware datetime."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _entry_timestamp(entry: Mapping[str, Any], fetched_at: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed"):
        stamp = struct_time_to_utc(field(entry, key))
        if stamp is not None:
            return stamp if stamp <= fetched_at + FUTURE_TOLERANCE else None
    return None


def absolute_url(link: Any, base_url: str) -> str | None:
    """``link`` resolved against ``base_url``; only http(s) URLs are kept (no javascript:)."""
    if not isinstance(link, str) or not link.strip():
        return None
    try:
        url = urljoin(base_url, link.strip())
        scheme = urlsplit(url).scheme
    except ValueError:
        return None
    return url if scheme in _WEB_SCHEMES else None


def _text_of(entry: Mapping[str, Any], key: str) -> str:
    value = field(entry, key)
    return value.strip() if isinstance(value, str) else ""


def _summary(entry: Mapping[str, Any]) -> str:
    """The plain-text summary: ``summary`` (RSS description), else the first content block."""
    raw = field(entry, "summary")
    if isinstance(raw, str) and raw.strip():
        return detail_text(raw, field(entry, "summary_detail"), SUMMARY_MAX_CHARS)
    for block in field(entry, "content") or ():
        value = block.get("value") if isinstance(block, Mapping) else None
        if isinstance(value, str) and value.strip():
            return detail_text(value, block, SUMMARY_MAX_CHARS)
    return ""


def _raw_content(entry: Mapping[str, Any]) -> str:
    parts = [_text_of(entry, "summary")]
    for block in field(entry, "content") or ():
        if isinstance(block, Mapping) and isinstance(block.get("value"), str):
            parts.append(block["value"])
    return "\n".join(parts)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def entry_identity(entry: Mapping[str, Any], link: str | None) -> str | None:
    """guid (``id``), else the absolute link, else a hash of title and content.

    Identities longer than :data:`IDENTITY_MAX_CHARS` are hashed to fit an index.
    """
    identity = _text_of(entry, "id") or link
    if not identity:
        title, content = _text_of(entry, "title"), _raw_content(entry)
        if not title and not content.strip():
            return None
        identity = sha256_hex(f"{title}\n{content}")
    return sha256_hex(identity) if len(identity) > IDENTITY_MAX_CHARS else identity


def _title(entry: Mapping[str, Any], summary: str, link: str | None) -> str:
    raw = _text_of(entry, "title")
    title = detail_text(raw, field(entry, "title_detail"), TITLE_MAX_CHARS) if raw else ""
    if title:
        return title
    if summary:
        words = summary.split()
        head = " ".join(words[:TITLE_FROM_SUMMARY_WORDS])
        suffix = "…" if len(words) > TITLE_FROM_SUMMARY_WORDS else ""
        return truncate(head, TITLE_MAX_CHARS) + suffix
    if link:
        return link
    raise EntryError("entry has no title, no link and no summary")


def _tags(entry: Mapping[str, Any]) -> tuple[str, ...]:
    terms: dict[str, None] = {}  # an ordered set: feeds repeat categories
    for tag in field(entry, "tags") or ():
        term = tag.get("term") if isinstance(tag, Mapping) else None
        if isinstance(term, str) and (text := collapse_whitespace(term)):
            terms.setdefault(text, None)
    return tuple(terms)


def json_safe(value: Any) -> Any:
    """``value`` with feedparser's non-JSON parts converted (struct_time → ISO text)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, time.struct_time):
        stamp = struct_time_to_utc(value)
        return stamp.isoformat() if stamp is not None else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return str(value)


def raw_entry(entry: Mapping[str, Any]) -> JsonDict:
    """The JSON-safe part of an entry that we store as its raw payload."""
    return {
        key: json_safe(field(entry, key)) for key in RAW_ENTRY_KEYS if field(entry, key) is not None
    }


class FeedContext:
    """What every entry of one feed needs to know."""

    __slots__ = ("base_url", "feed_title", "feed_url", "fetched_at")

    def __init__(
        self, feed_url: str, base_url: str, feed_title: str | None, fetched_at: datetime
    ) -> None:
        self.feed_url = feed_url
        self.base_url = base_url
        self.feed_title = feed_title
        self.fetched_at = fetched_at


def entry_to_record(entry: Mapping[str, Any], ctx: FeedContext) -> NewsRecord:
    """A feedparser entry as a :class:`NewsRecord`; raise :class:`EntryError` if unusable."""
    link = absolute_url(field(entry, "link"), ctx.base_url)
    summary = _summary(entry)
    title = _title(entry, summary, link)
    identity = entry_identity(entry, link)
    if identity is None:
        raise EntryError("entry has no guid, no link and no content to identify it")
    tags = _tags(entry)
    return NewsRecord(
        source_type="rss",
        source_id=identity,
        title=title,
        summary=summary or None,
        url=link,
        author=_text_of(entry, "author") or None,
        tags=tags,
        category=tags[0] if tags else None,
        source_timestamp=_entry_timestamp(entry, ctx.fetched_at),
        metadata={
            "feed": ctx.feed_url,
            "guid": _text_of(entry, "id") or None,
            "feed_title": ctx.feed_title,
        },
    )
