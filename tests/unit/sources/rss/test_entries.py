"""RSS entries: our fixture feed, identity, titles, links and dates."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from cryptoetl.sources.base import Batch
from cryptoetl.sources.rss import parse_feed

from .support import FEED_URL, FETCHED_AT, news, parse, rss

# --------------------------------------------------------------------------- our fixture


@pytest.fixture
def fixture_batch(fixtures_dir: Path) -> Batch:
    return parse((fixtures_dir / "rss" / "feed.xml").read_bytes())


def test_fixture_parses_every_item(fixture_batch: Batch) -> None:
    batch = fixture_batch
    assert (len(batch.records), batch.rejects, batch.warnings, batch.processed) == (8, [], [], 8)
    titles = [r.title for r in news(batch)]
    assert titles[0] == "Bitcoin climbs back above $69K as ETF inflows return"
    assert titles[3] == "Tether mints another $1B USDT on Tron & Ethereum"
    assert sum("Solana" in t or "SOL" in t for t in titles) >= 3


def test_fixture_guid_identity_and_metadata(fixture_batch: Batch) -> None:
    first = news(fixture_batch)[0]
    assert first.source_type == "rss"
    assert first.source_id == "cw-2024-11-05-0001"
    assert first.author == "Dana Whitfield"
    assert first.tags == ("Bitcoin", "ETF", "Markets")
    assert first.category == "Bitcoin"
    assert first.metadata == {
        "feed": FEED_URL,
        "guid": "cw-2024-11-05-0001",
        "feed_title": "Crypto Wire — Latest News",
    }


def test_fixture_item_without_guid_is_identified_by_link(fixture_batch: Batch) -> None:
    record = next(r for r in news(fixture_batch) if r.title.startswith("Analysts"))
    assert record.source_id == "https://news.example.com/news/options-volatile-week-btc-eth-sol"
    assert record.metadata["guid"] is None
    assert record.tags == ("Markets", "Bitcoin")  # the repeated category is kept once


def test_fixture_relative_link_is_made_absolute(fixture_batch: Batch) -> None:
    record = next(r for r in news(fixture_batch) if r.title.startswith("Solana"))
    assert record.url == "http://stub.test/news/solana-dex-volume-overtakes-ethereum"


def test_fixture_html_is_stripped(fixture_batch: Batch) -> None:
    records = news(fixture_batch)
    assert records[0].summary == (
        "Spot Bitcoin ETFs recorded net inflows of $312\xa0million on Monday, ending a "
        "three-day streak of outflows. Traders say BTC\u2019s move above $69,000 was driven by "
        '"short covering".'
    ).replace("\xa0", " ")
    assert records[1].summary is not None
    assert records[1].summary.endswith("rollups. Base and Arbitrum lead Blob usage up 40%")
    solana = next(r for r in records if r.title.startswith("Solana"))
    assert solana.summary is not None
    assert "trackView" not in solana.summary  # script content is not text
    for record in records:
        assert record.summary is not None
        assert "<" not in record.summary
        assert "&nbsp;" not in record.summary


def test_fixture_dates_are_utc(fixture_batch: Batch) -> None:
    stamps = {r.source_id: r.source_timestamp for r in news(fixture_batch)}
    assert stamps["cw-2024-11-05-0001"] == datetime(2024, 11, 5, 11, 42, 10, tzinfo=UTC)
    assert stamps["cw-2024-11-05-0003"] == datetime(2024, 11, 5, 8, 30, tzinfo=UTC)  # +0100
    link = "https://news.example.com/news/options-volatile-week-btc-eth-sol"
    assert stamps[link] == datetime(2024, 11, 5, 3, 10, tzinfo=UTC)  # -0500, the day before
    assert all(s is not None and s.tzinfo is UTC for s in stamps.values())


def test_fixture_raw_payloads_are_json(fixture_batch: Batch) -> None:
    raw = fixture_batch.raw
    assert len(raw) == 8
    assert raw[0].source_key == f"{FEED_URL}#cw-2024-11-05-0001"
    payload = raw[0].payload
    assert payload["published"] == "Tue, 05 Nov 2024 11:42:10 +0000"
    assert {"id", "title", "link", "summary", "tags", "authors"} <= set(payload)
    msgspec.json.encode([r.payload for r in raw])  # nothing feedparser-specific left


# --------------------------------------------------------------------------- identity


def test_entry_without_guid_or_link_is_identified_by_content_hash() -> None:
    body = rss("<item><title>Only a title</title><description>Body</description></item>")
    first, second = news(parse(body))[0], news(parse(body))[0]
    assert first.source_id == second.source_id
    assert len(first.source_id) == 64
    int(first.source_id, 16)
    assert first.url is None


def test_very_long_guid_is_hashed() -> None:
    guid = "urn:x:" + "a" * 600
    record = news(parse(rss(f"<item><guid>{guid}</guid><title>t</title></item>")))[0]
    assert record.source_id == hashlib.sha256(guid.encode()).hexdigest()
    assert record.metadata["guid"] == guid


def test_duplicate_guid_is_left_to_the_stores_rule() -> None:
    """Both entries reach the store, whose one rule for duplicates in a batch keeps the later
    (tests/integration/pipeline/test_store.py); nothing is rejected here."""
    item = "<item><guid>same</guid><title>{}</title></item>"
    batch = parse(rss(item.format("one") + item.format("two")))
    [first, second] = news(batch)
    assert first.source_id == second.source_id
    assert (first.title, second.title) == ("one", "two")
    assert batch.rejects == []


# --------------------------------------------------------------------------- titles, links, dates


def test_missing_title_comes_from_summary_or_link() -> None:
    words = " ".join(f"w{i}" for i in range(20))
    batch = parse(
        rss(
            f"<item><guid>a</guid><description>&lt;p&gt;{words}&lt;/p&gt;</description></item>"
            "<item><link>https://ex.test/only-link</link></item>"
        )
    )
    first, second = news(batch)
    assert first.title == "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11…"
    assert second.title == "https://ex.test/only-link"


def test_entry_with_nothing_is_rejected() -> None:
    batch = parse(rss("<item><author></author></item><item><title>ok</title></item>"))
    assert [r.title for r in news(batch)] == ["ok"]
    [reject] = batch.rejects
    assert reject.reason == "entry has no title, no link and no summary"
    assert reject.source_key == f"{FEED_URL}#?"
    assert batch.processed == 2


def test_non_web_links_are_dropped() -> None:
    record = news(parse(rss("<item><title>x</title><link>javascript:alert(1)</link></item>")))[0]
    assert record.url is None


def test_updated_date_is_the_fallback_and_future_dates_are_dropped() -> None:
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>A</title><id>urn:a</id><updated>2024-11-05T10:00:00Z</updated>"
        "<entry><id>urn:1</id><title>one</title><updated>2024-11-05T10:00:00+02:00</updated>"
        "</entry><entry><id>urn:2</id><title>two</title><updated>2031-01-01T00:00:00Z</updated>"
        "</entry></feed>"
    )
    one, two = news(parse(atom, "application/atom+xml"))
    assert one.source_timestamp == datetime(2024, 11, 5, 8, 0, tzinfo=UTC)
    assert two.source_timestamp is None


def test_unparseable_date_is_none() -> None:
    item = "<item><guid>a</guid><title>t</title><pubDate>Seg, 24 Set 2018 19:42</pubDate></item>"
    assert news(parse(rss(item)))[0].source_timestamp is None


def test_atom_relative_links_resolve_against_base_url() -> None:
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Releases</title><id>urn:r</id><updated>2024-01-01T00:00:00Z</updated>"
        '<entry><id>urn:1</id><title>v1</title><link href="/org/repo/releases/v1"/>'
        '<content type="html">&lt;p&gt;Notes &amp;amp; fixes&lt;/p&gt;</content>'
        "<updated>2024-01-01T00:00:00Z</updated></entry></feed>"
    )
    batch = parse_feed(
        atom.encode(),
        feed_url="https://code.example/org/repo/releases.atom",
        content_type="application/atom+xml",
        fetched_at=FETCHED_AT,
    )
    [record] = news(batch)
    assert record.url == "https://code.example/org/repo/releases/v1"
    assert record.summary == "Notes & fixes"
