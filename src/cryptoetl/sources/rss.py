"""RSS 2.0 / RSS 1.0 / Atom news feeds, fetched conditionally and parsed with feedparser.

Each configured feed is one conditional GET (``If-None-Match`` / ``If-Modified-Since`` from the
cursor); a ``304 Not Modified`` costs no parsing. Feeds in the wild are often broken, so
whatever feedparser recovers from an ill-formed feed is kept and the problem is reported as a
batch warning; only a body with nothing feed-like in it is an error. One failing feed does not
stop the others: it becomes a warning, and the run fails only when every feed failed.

A feed yields one batch (feeds carry tens of entries, far below any batch size); a feed of more
than ``MAX_ITEMS_PER_PAGE`` entries is refused like any other bad body.

**Credentials in feed URLs** (``?token=...``, ``user:pass@``) are needed to fetch, and shown or
stored nowhere: a feed is known by its redacted URL (``redact_url``) in the cursor, raw keys,
``metadata.feed`` and every message, and every string taken from its entries goes through the
settings' redactor, since private feeds quote their own URL, token included, in links.

**Empty elements never overwrite a summary.** CoinDesk items carry their text in
``<description>`` followed by an empty ``<content:encoded/>`` and ``<dc:description/>``;
feedparser lets the last of them win, and the summary became empty. Empty summary-like elements
(:data:`_EMPTY_SUMMARY_ELEMENT`) are removed from the body before parsing: they carry no text,
so nothing is lost.
"""

from __future__ import annotations

import codecs
import copy
import hashlib
import io
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import feedparser

from cryptoetl.config import DEFAULT_MAX_ITEMS_PER_PAGE, Settings
from cryptoetl.redaction import EXCERPT_CHARS, Redactor, redact_url
from cryptoetl.sources.base import (
    Batch,
    JsonDict,
    NewsRecord,
    RawPayload,
    Record,
    Reject,
    SourceError,
    SourceType,
)
from cryptoetl.sources.http import HttpClient, body_snippet

SUMMARY_MAX_CHARS = 2000
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
PROLOG_BYTES = 200  # where an XML declaration (and its encoding=) must be
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
# An element feedparser reads into an entry's summary (description, dc:description,
# media:description, summary, itunes:summary, abstract, content:encoded), with nothing in it:
# self-closed, or holding only blanks or an empty CDATA section. Matched on the bytes, which
# suits every ASCII-compatible encoding (a UTF-16 feed is parsed unchanged).
_EMPTY_SUMMARY_ELEMENT = re.compile(
    rb"<((?:[A-Za-z_][\w.-]*:)?(?:description|summary|abstract|encoded))\b[^<>]*?"
    rb"(?:/>|(?<!/)>\s*(?:<!\[CDATA\[\s*\]\]>)?\s*</\1\s*>)"
)
NO_SECRETS = Redactor()
_WEB_SCHEMES = frozenset({"http", "https"})


class EntryError(ValueError):
    """An entry that cannot become a news record; it becomes a Reject."""


# --------------------------------------------------------------------------- HTML to text


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment; block tags become spaces, scripts vanish."""

    _BLOCK_TAGS = frozenset(
        {"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td"}
        | {"th", "blockquote", "pre", "hr", "section", "article", "header", "footer"}
        | {"figure", "figcaption", "table", "dd", "dt"}
    )
    _SKIPPED_TAGS = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities are unescaped in handle_data
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag in self._BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self._BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit - 100:
        cut = cut[:space]
    return cut.rstrip() + "…"


def html_to_text(html: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """Plain text of an HTML fragment: tags dropped, entities unescaped, whitespace collapsed."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        # html.parser gives up on some malformed markup; keep what it collected so far.
        pass
    return truncate(collapse_whitespace("".join(parser.parts)), limit)


def _detail_text(value: str, detail: Any, limit: int) -> str:
    """Text of a feedparser value, stripped as HTML only when its detail says it is HTML."""
    kind = detail.get("type") if isinstance(detail, Mapping) else None
    if kind is None or kind in _HTML_TYPES:
        return html_to_text(value, limit)
    return truncate(collapse_whitespace(value), limit)


# --------------------------------------------------------------------------- entry fields


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
        return _detail_text(raw, field(entry, "summary_detail"), SUMMARY_MAX_CHARS)
    for block in field(entry, "content") or ():
        value = block.get("value") if isinstance(block, Mapping) else None
        if isinstance(value, str) and value.strip():
            return _detail_text(value, block, SUMMARY_MAX_CHARS)
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
    title = _detail_text(raw, field(entry, "title_detail"), TITLE_MAX_CHARS) if raw else ""
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


class _FeedContext:
    """What every entry of one feed needs to know."""

    __slots__ = ("base_url", "feed_title", "feed_url", "fetched_at")

    def __init__(
        self, feed_url: str, base_url: str, feed_title: str | None, fetched_at: datetime
    ) -> None:
        self.feed_url = feed_url
        self.base_url = base_url
        self.feed_title = feed_title
        self.fetched_at = fetched_at


def entry_to_record(entry: Mapping[str, Any], ctx: _FeedContext) -> NewsRecord:
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


# --------------------------------------------------------------------------- whole feed


def _ill_formed_warning(parsed: Mapping[str, Any], feed_url: str) -> str | None:
    if not parsed.get("bozo"):
        return None
    exc = parsed.get("bozo_exception")
    # A missing or non-XML Content-Type is not ill-formed XML; feedparser flags it anyway.
    if isinstance(exc, feedparser.NonXMLContentType):
        return None
    return f"feed {feed_url} is ill-formed: {truncate(str(exc), EXCERPT_CHARS)}"


def _encoding_guess_warning(
    body: bytes, parsed: Mapping[str, Any], content_type: str | None, feed_url: str
) -> str | None:
    """A warning when the text encoding was guessed: no charset, no declaration, not UTF-8.

    feedparser then falls back to a single-byte guess, right for Latin-1 feeds but garbling
    e.g. KOI8-R text; without a declared encoding nobody can do better, so we say so.
    """
    if content_type and "charset=" in content_type.lower():
        return None
    if body.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    if b"encoding=" in body[:PROLOG_BYTES].split(b"?>", 1)[0]:
        return None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        guess = parsed.get("encoding") or "an unknown encoding"
        return f"feed {feed_url} declares no text encoding and is not UTF-8; decoded as {guess}"
    return None


def _is_charsetless_text(content_type: str) -> bool:
    """``text/xml`` (or ``text/html``...) without a charset parameter.

    feedparser follows RFC 3023, where such a body is US-ASCII, and flags every UTF-8 feed
    served that way. RFC 7303 replaced that rule: the XML declaration decides. Not passing the
    type on gets exactly that behaviour.
    """
    lowered = content_type.lower()
    return lowered.startswith("text/") and "charset=" not in lowered


def without_empty_summaries(body: bytes) -> bytes:
    """``body`` without empty summary-like elements, which would overwrite a summary."""
    return _EMPTY_SUMMARY_ELEMENT.sub(b"", body)


def _feedparser_parse(body: bytes, feed_url: str, base_url: str, content_type: str | None) -> Any:
    headers = {"content-location": base_url}
    if content_type and not _is_charsetless_text(content_type):
        headers["content-type"] = content_type
    try:
        # A stream, never bytes: feedparser would try to open a bytes value as a file name.
        return feedparser.parse(io.BytesIO(without_empty_summaries(body)), response_headers=headers)
    except Exception as exc:
        # On corrupt bodies feedparser itself can crash (KeyError, OverflowError on a huge
        # character reference, UnicodeDecodeError in its encoding sniffing...): that is one
        # bad body, to be reported like any other, not a crash of the run.
        detail = truncate(f"{type(exc).__name__}: {exc}", EXCERPT_CHARS)
        raise SourceError(
            f"feed {feed_url}: the feed parser failed on this body "
            f"({detail}; starts with {body_snippet(body)!r})"
        ) from exc


def parse_feed(
    body: bytes,
    *,
    feed_url: str,
    content_type: str | None,
    fetched_at: datetime,
    base_url: str | None = None,
    redactor: Redactor = NO_SECRETS,
    max_items: int = DEFAULT_MAX_ITEMS_PER_PAGE,
) -> Batch:
    """A feed body → one raw payload per entry, records, rejects and warnings (no cursor).

    ``feed_url`` is the feed as it may be shown (redacted). ``base_url`` (default
    ``feed_url``; the final URL after redirects) resolves relative links. Every string taken
    from the entries goes through ``redactor``. Raises :class:`SourceError` when nothing
    feed-like can be recovered, or for more than ``max_items`` entries.
    """
    if not body.strip():
        raise SourceError(f"feed {feed_url}: body is empty")
    base = base_url or feed_url
    parsed = _feedparser_parse(body, feed_url, base, content_type)
    entries = parsed.get("entries") or []
    if not parsed.get("version") and not entries:
        detail = parsed.get("bozo_exception")
        reason = (
            f"; {truncate(str(detail), EXCERPT_CHARS)}" if detail and parsed.get("bozo") else ""
        )
        raise SourceError(
            f"feed {feed_url}: body is not an RSS or Atom feed "
            f"(starts with {body_snippet(body)!r}{reason})"
        )
    if len(entries) > max_items:
        raise SourceError(
            f"feed {feed_url}: {len(entries)} entries, more than MAX_ITEMS_PER_PAGE={max_items}"
        )
    feed_title = redactor(collapse_whitespace(parsed.get("feed", {}).get("title") or "")) or None
    ctx = _FeedContext(feed_url, base, feed_title, fetched_at)
    batch = _entries_batch([redactor.redact_json(entry) for entry in entries], ctx)
    for warning in (
        _ill_formed_warning(parsed, feed_url),
        _encoding_guess_warning(body, parsed, content_type, feed_url),
    ):
        if warning:
            batch.warnings.append(warning)
    return batch


def _entries_batch(entries: Iterable[Mapping[str, Any]], ctx: _FeedContext) -> Batch:
    batch = Batch()
    records: list[Record] = []
    for entry in entries:
        batch.processed += 1
        payload = raw_entry(entry)
        try:
            record = entry_to_record(entry, ctx)
        except EntryError as exc:
            key = f"{ctx.feed_url}#?"
            batch.raw.append(RawPayload(source_key=key, payload=payload))
            batch.rejects.append(Reject(source_key=key, payload=payload, reason=str(exc)))
            continue
        key = f"{ctx.feed_url}#{record.source_id}"
        batch.raw.append(RawPayload(source_key=key, payload=payload))
        # Two entries with one identity both go on: the store's rule for duplicates inside a
        # batch (the later wins, the earlier counted unchanged) applies as for every source.
        records.append(record)
    batch.records = records
    return batch


# --------------------------------------------------------------------------- source


def _feeds_state(cursor: Mapping[str, Any], known: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored state of the ``known`` feeds (by shown URL); any other entry is dropped.

    Dropping the others also removes, at the first run after an upgrade, entries stored under
    a URL in clear when credentials were not yet redacted.
    """
    feeds = cursor.get("feeds")
    if not isinstance(feeds, Mapping):
        return {}
    wanted = set(known)
    return {
        url: dict(state)
        for url, state in feeds.items()
        if url in wanted and isinstance(state, Mapping)
    }


def conditional_headers(state: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(etag := state.get("etag"), str) and etag:
        headers["If-None-Match"] = etag
    if isinstance(modified := state.get("last_modified"), str) and modified:
        headers["If-Modified-Since"] = modified
    return headers


class RssSource:
    """Every feed of ``settings.rss_feed_urls``; one batch per feed."""

    source_type: ClassVar[SourceType] = "rss"

    def __init__(self, settings: Settings, http: HttpClient) -> None:
        self._settings = settings
        self._http = http
        self._redactor = settings.redactor()
        # Each configured URL (with its credentials, to fetch) and how it is shown and stored.
        self._feeds = [(url, self._redactor(redact_url(url))) for url in settings.rss_feed_urls]

    async def _feed_batch(self, url: str, shown: str, feeds: dict[str, dict[str, Any]]) -> Batch:
        """Fetch and parse one feed, updating ``feeds[shown]`` when a new body arrived."""
        state = feeds.get(shown, {})
        response = await self._http.get(
            url, headers=conditional_headers(state), accept_statuses=frozenset({200, 304})
        )
        if response.status == 304:
            return Batch()
        fetched_at = datetime.now(UTC)
        batch = parse_feed(
            response.body,
            feed_url=shown,
            content_type=response.headers.get("content-type"),
            fetched_at=fetched_at,
            base_url=response.url or shown,
            redactor=self._redactor,
            max_items=self._settings.max_items_per_page,
        )
        feeds[shown] = {
            "etag": response.headers.get("etag"),
            "last_modified": response.headers.get("last-modified"),
            "last_fetch": fetched_at.isoformat(),
        }
        return batch

    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        """One batch per feed, each carrying the whole ``{"feeds": {...}}`` cursor so far."""
        feeds = _feeds_state(cursor, (shown for _, shown in self._feeds))
        failures: list[str] = []
        for url, shown in self._feeds:
            try:
                batch = await self._feed_batch(url, shown, feeds)
            except SourceError as exc:
                # The feed keeps its old cursor entry, so the next run retries it in full.
                reason = self._redactor(str(exc))
                failures.append(f"{shown}: {reason}")
                batch = Batch(warnings=[f"feed {shown} failed: {reason}"])
            batch.cursor = {"feeds": copy.deepcopy(feeds)}
            yield batch
        if self._feeds and len(failures) == len(self._feeds):
            raise SourceError(f"all {len(self._feeds)} feeds failed: " + "; ".join(failures))
