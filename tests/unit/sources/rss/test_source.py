"""RssSource: conditional fetches, the per-feed cursor, failing feeds, redaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from cryptoetl.config import Settings, load_settings
from cryptoetl.sources.base import Batch, SourceError
from cryptoetl.sources.http import HttpResponse, UpstreamError
from cryptoetl.sources.rss import RssSource

from .support import TOKEN, news, rss


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
