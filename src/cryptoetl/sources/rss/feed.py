"""A whole feed body: feedparser's call, what an ill-formed feed or a guessed encoding warns,
and :func:`parse_feed`, one batch of raw payloads, records and rejects.

**Empty elements never overwrite a summary.** CoinDesk items carry their text in
``<description>`` followed by an empty ``<content:encoded/>`` and ``<dc:description/>``;
feedparser lets the last of them win, and the summary became empty. Empty summary-like elements
(:data:`_EMPTY_SUMMARY_ELEMENT`) are removed from the body before parsing: they carry no text,
so nothing is lost.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import feedparser

from cryptoetl.config import DEFAULT_MAX_ITEMS_PER_PAGE
from cryptoetl.redaction import EXCERPT_CHARS, Redactor
from cryptoetl.sources.base import Batch, RawPayload, Record, Reject, SourceError
from cryptoetl.sources.http import body_snippet
from cryptoetl.sources.rss.entries import EntryError, FeedContext, entry_to_record, raw_entry
from cryptoetl.sources.rss.text import collapse_whitespace, truncate

PROLOG_BYTES = 200  # where an XML declaration (and its encoding=) must be
# An element feedparser reads into an entry's summary (description, dc:description,
# media:description, summary, itunes:summary, abstract, content:encoded), with nothing in it:
# self-closed, or holding only blanks or an empty CDATA section. Matched on the bytes, which
# suits every ASCII-compatible encoding (a UTF-16 feed is parsed unchanged).
_EMPTY_SUMMARY_ELEMENT = re.compile(
    rb"<((?:[A-Za-z_][\w.-]*:)?(?:description|summary|abstract|encoded))\b[^<>]*?"
    rb"(?:/>|(?<!/)>\s*(?:<!\[CDATA\[\s*\]\]>)?\s*</\1\s*>)"
)
NO_SECRETS = Redactor()


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
    ctx = FeedContext(feed_url, base, feed_title, fetched_at)
    batch = _entries_batch([redactor.redact_json(entry) for entry in entries], ctx)
    for warning in (
        _ill_formed_warning(parsed, feed_url),
        _encoding_guess_warning(body, parsed, content_type, feed_url),
    ):
        if warning:
            batch.warnings.append(warning)
    return batch


def _entries_batch(entries: Iterable[Mapping[str, Any]], ctx: FeedContext) -> Batch:
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
