"""RSS/Atom: parse_feed on our fixture and edge cases, HTML stripping, and the source."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import msgspec
import pytest

from cryptoetl.config import Settings, load_settings
from cryptoetl.redaction import Redactor
from cryptoetl.sources.base import Batch, NewsRecord, SourceError
from cryptoetl.sources.http import HttpResponse, UpstreamError
from cryptoetl.sources.rss import (
    RssSource,
    html_to_text,
    parse_feed,
    without_empty_summaries,
)

FEED_URL = "http://stub.test/rss"
FETCHED_AT = datetime(2024, 11, 5, 12, 10, tzinfo=UTC)


def parse(body: bytes | str, content_type: str | None = "application/rss+xml") -> Batch:
    data = body.encode() if isinstance(body, str) else body
    return parse_feed(data, feed_url=FEED_URL, content_type=content_type, fetched_at=FETCHED_AT)


def news(batch: Batch) -> list[NewsRecord]:
    result = [r for r in batch.records if isinstance(r, NewsRecord)]
    assert len(result) == len(batch.records)
    return result


def rss(items: str, channel: str = "<title>Test feed</title>") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"{channel}{items}</channel></rss>"
    )


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


# --------------------------------------------------------------------------- html_to_text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>a</p><p>b</p>", "a b"),
        ("x<br>y<br/>z", "x y z"),
        ("<b>bold</b>text", "boldtext"),
        ("AT&amp;T &lt;3 &euro;5 &#8364;6", "AT&T <3 €5 €6"),
        ("<style>p{}</style><script>x()</script>visible", "visible"),
        ("  lots \n\t of   space  ", "lots of space"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("<div><p>unclosed", "unclosed"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_html_to_text_caps_length_at_a_word() -> None:
    text = html_to_text("<p>" + "word " * 1000 + "</p>")
    assert len(text) <= 2000
    assert text.endswith("word…")


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


TOKEN = "feed-token-6f1e2d3c4b"


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


# --------------------------------------------------------------------------- the source


class FakeHttp:
    """Serves feeds by URL: bytes -> 200, an int -> that status, an exception -> raised."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, str] | None, frozenset[int]]] = []

    async def get(
        self,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        accept_statuses: frozenset[int] = frozenset({200}),
    ) -> HttpResponse:
        self.calls.append((url, headers, accept_statuses))
        answer = self.answers[url]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return HttpResponse(url=url, status=answer, headers={}, body=b"")
        headers_out = {
            "content-type": "application/rss+xml",
            "etag": f'"{len(answer)}"',
            "last-modified": "Tue, 05 Nov 2024 12:00:00 GMT",
        }
        return HttpResponse(url=url, status=200, headers=headers_out, body=answer)


def settings(*urls: str) -> Settings:
    return Settings(database_url=None, api_database_url=None, rss_feed_urls=urls)


async def collect(source: RssSource, cursor: dict[str, Any]) -> list[Batch]:
    return [batch async for batch in source.batches(cursor, 1000)]


async def drain(source: RssSource, seen: list[Batch]) -> None:
    async for batch in source.batches({}, 1000):
        seen.append(batch)


A, B = "http://a.test/rss", "http://b.test/feed"
FEED = rss("<item><guid>g1</guid><title>Bitcoin</title><link>/n/1</link></item>").encode()


async def test_source_first_fetch_records_validators() -> None:
    http = FakeHttp({A: FEED})
    [batch] = await collect(RssSource(settings(A), http), {})  # type: ignore[arg-type]
    assert [r.url for r in news(batch)] == ["http://a.test/n/1"]
    assert http.calls == [(A, {}, frozenset({200, 304}))]
    assert batch.cursor is not None
    state = batch.cursor["feeds"][A]
    assert state["etag"] == f'"{len(FEED)}"'
    assert state["last_modified"] == "Tue, 05 Nov 2024 12:00:00 GMT"
    assert datetime.fromisoformat(state["last_fetch"]).tzinfo is not None


async def test_source_sends_conditional_headers_and_handles_304() -> None:
    cursor = {"feeds": {A: {"etag": '"abc"', "last_modified": "Mon, 04 Nov 2024 00:00:00 GMT"}}}
    http = FakeHttp({A: 304})
    [batch] = await collect(RssSource(settings(A), http), cursor)  # type: ignore[arg-type]
    assert http.calls[0][1] == {
        "If-None-Match": '"abc"',
        "If-Modified-Since": "Mon, 04 Nov 2024 00:00:00 GMT",
    }
    assert (batch.records, batch.raw, batch.processed) == ([], [], 0)
    assert batch.cursor == cursor


async def test_source_one_failing_feed_does_not_stop_the_others() -> None:
    cursor = {"feeds": {A: {"etag": '"old"'}}}
    http = FakeHttp({A: UpstreamError("GET a: HTTP 503"), B: FEED})
    batches = await collect(RssSource(settings(A, B), http), cursor)  # type: ignore[arg-type]
    assert [len(b.records) for b in batches] == [0, 1]
    assert batches[0].warnings == [f"feed {A} failed: GET a: HTTP 503"]
    final = batches[-1].cursor
    assert final is not None
    assert final["feeds"][A] == {"etag": '"old"'}  # unchanged: retried in full next time
    assert B in final["feeds"]


async def test_source_keys_feeds_by_their_redacted_url() -> None:
    url = f"http://a.test/rss?token={TOKEN}"
    shown = "http://a.test/rss?token=***"
    stale = {url: {"etag": '"from-before-the-fix"'}, shown: {"etag": '"abc"'}}
    http = FakeHttp({url: FEED})
    source = RssSource(load_settings({"RSS_FEED_URLS": url}), http)  # type: ignore[arg-type]
    [batch] = await collect(source, {"feeds": stale})
    assert http.calls[0][:2] == (url, {"If-None-Match": '"abc"'})  # fetched with the token
    assert batch.cursor is not None
    assert list(batch.cursor["feeds"]) == [shown]  # the entry in clear is gone
    [record] = news(batch)
    assert record.metadata["feed"] == shown
    assert [raw.source_key for raw in batch.raw] == [f"{shown}#{record.source_id}"]


async def test_source_warnings_are_redacted() -> None:
    url = f"http://a.test/rss?token={TOKEN}"
    echo = UpstreamError(f"GET a: HTTP 403: bad token {TOKEN[:12]}")  # a partial echo
    http = FakeHttp({url: echo, B: FEED})
    source = RssSource(load_settings({"RSS_FEED_URLS": f"{url},{B}"}), http)  # type: ignore[arg-type]
    batches = await collect(source, {})
    assert batches[0].warnings == [
        "feed http://a.test/rss?token=*** failed: GET a: HTTP 403: bad token ***"
    ]


async def test_source_fails_when_every_feed_fails() -> None:
    http = FakeHttp({A: b"<html>login</html>", B: UpstreamError("GET b: HTTP 404")})
    source = RssSource(settings(A, B), http)  # type: ignore[arg-type]
    seen: list[Batch] = []
    with pytest.raises(SourceError, match="all 2 feeds failed"):
        await drain(source, seen)
    assert len(seen) == 2
