"""RSS/Atom feeds as a whole: broken feeds, empty summary elements, hostile feeds."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import feedparser
import msgspec
import pytest

from cryptoetl.redaction import Redactor
from cryptoetl.sources.base import SourceError
from cryptoetl.sources.rss import (
    parse_feed,
    without_empty_summaries,
)

from .support import FEED_URL, FETCHED_AT, TOKEN, news, parse, rss

# --------------------------------------------------------------------------- broken feeds


def test_ill_formed_feed_keeps_recovered_entries_with_a_warning() -> None:
    body = rss("<item><title>kept</title><link>https://ex.test/a</link></item>")[:-6]
    batch = parse(body)
    assert [r.title for r in news(batch)] == ["kept"]
    [warning] = batch.warnings
    assert warning.startswith(f"feed {FEED_URL} is ill-formed: ")


def test_missing_content_type_is_not_a_warning() -> None:
    batch = parse(rss("<item><title>t</title></item>"), content_type=None)
    assert batch.warnings == []


def test_charsetless_text_xml_is_decoded_by_its_declaration() -> None:
    body = rss("<item><title>Bitcoin über €70K</title></item>").encode()
    batch = parse(body, content_type="text/xml")
    assert news(batch)[0].title == "Bitcoin über €70K"
    assert batch.warnings == []


def test_undeclared_non_utf8_encoding_is_warned_about() -> None:
    body = "<rss version='2.0'><channel><item><title>Notícia</title></item></channel></rss>"
    batch = parse(body.encode("latin-1"), content_type=None)
    assert news(batch)[0].title == "Notícia"
    assert any("declares no text encoding" in w for w in batch.warnings)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "body is empty"),
        (b"   ", "body is empty"),
        (b"<html><head><title>Oops</title></head><body>502</body></html>", "starts with '<html>"),
        (b"Rate limit exceeded", "'Rate limit exceeded'"),
        (b'{"error": "x"}', "not an RSS or Atom feed"),
        (b"<rss", "not an RSS or Atom feed"),
        # feedparser itself crashes on these (OverflowError, UnicodeDecodeError):
        (b"<rss version='2.0'><channel><item><title>&#xFFFFFFFFFF;</title>", "parser failed"),
        (b'<?xml version="1.0" encoding="\xff\xfe"?><rss/>', "parser failed"),
    ],
)
def test_bodies_that_are_not_feeds(body: bytes, fragment: str) -> None:
    with pytest.raises(SourceError, match=f"^feed {FEED_URL}: ") as info:
        parse(body, content_type="text/html")
    assert fragment in str(info.value)


def test_empty_but_valid_feed_is_an_empty_batch() -> None:
    batch = parse(rss(""))
    assert (batch.records, batch.rejects, batch.warnings) == ([], [], [])


# --------------------------------------------------------------------------- empty elements


@pytest.fixture
def coindesk_like(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "rss" / "coindesk_empty_elements.xml").read_bytes()


def test_fixture_reproduces_empty_elements_overwriting_the_summary(coindesk_like: bytes) -> None:
    # feedparser alone: the empty <content:encoded/> and <dc:description/> win.
    assert [e.get("summary") for e in feedparser.parse(coindesk_like).entries] == [""] * 4


def test_empty_elements_never_overwrite_a_summary(coindesk_like: bytes) -> None:
    records = news(parse(coindesk_like))
    assert [r.summary for r in records] == [
        "Bitcoin traded sideways ahead of the central bank's decision, with options desks "
        "pricing a quiet week.",
        "Deposits into the beacon chain rose for a sixth week, led by liquid staking protocols.",
        "Network fees on Solana doubled over the weekend as memecoin volumes came back.",
        None,  # its description is empty too: nothing to keep
    ]


def test_only_empty_summary_elements_are_removed() -> None:
    body = (
        b'<item><description>kept</description><content:encoded/><dc:description a="1"/>'
        b"<summary> </summary><abstract><![CDATA[]]></abstract>"
        b'<media:content url="https://x/img.png"/><media:description>caption</media:description>'
        b"<title></title><link/></item>"
    )
    assert without_empty_summaries(body) == (
        b'<item><description>kept</description><media:content url="https://x/img.png"/>'
        b"<media:description>caption</media:description><title></title><link/></item>"
    )


def test_coindesk_corpus_keeps_every_summary(corpus_dir: Path) -> None:
    body = (corpus_dir / "rss" / "coindesk_rss_2023-03-13.xml").read_bytes()
    with_text = [
        bool((item.findtext("description") or "").strip())
        for item in ET.fromstring(body).iter("item")
    ]
    records = news(parse(body))
    assert len(records) == len(with_text) == 50
    assert [bool(r.summary) for r in records] == with_text
    assert sum(with_text) == 49  # one genuine item has an empty description


# --------------------------------------------------------------------------- hostile feeds


def test_every_string_from_entries_is_redacted() -> None:
    url = f"https://private.test/rss?token={TOKEN}"
    body = rss(
        f"<item><guid>{url}&amp;id=1</guid><title>Note for {TOKEN}</title>"
        f"<link>{url}&amp;item=1</link><description>Read at {url}</description></item>",
        channel=f"<title>Feed of {TOKEN}</title>",
    )
    batch = parse_feed(
        body.encode(),
        feed_url="https://private.test/rss?token=***",
        content_type="application/rss+xml",
        fetched_at=FETCHED_AT,
        redactor=Redactor([TOKEN]),
    )
    [record] = news(batch)
    assert record.url == "https://private.test/rss?token=***&item=1"
    assert record.source_id == "https://private.test/rss?token=***&id=1"
    assert record.title == "Note for ***"
    assert record.metadata["feed_title"] == "Feed of ***"
    assert TOKEN[:8] not in msgspec.json.encode([batch.raw, record]).decode()


def test_feed_with_too_many_entries_is_refused() -> None:
    body = rss("".join(f"<item><guid>g{n}</guid><title>t{n}</title></item>" for n in range(5)))
    with pytest.raises(SourceError, match=r"5 entries, more than MAX_ITEMS_PER_PAGE=4"):
        parse_feed(
            body.encode(), feed_url=FEED_URL, content_type=None, fetched_at=FETCHED_AT, max_items=4
        )
    assert len(news(parse(body))) == 5
