"""Helpers shared by the RSS tests: parse a body as our one feed URL, build an RSS body."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptoetl.sources.base import Batch, NewsRecord
from cryptoetl.sources.rss import parse_feed

FEED_URL = "http://stub.test/rss"
FETCHED_AT = datetime(2024, 11, 5, 12, 10, tzinfo=UTC)
TOKEN = "feed-token-6f1e2d3c4b"


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
