"""Issue 14 through the whole worker: hostile upstreams, then every stored row and log line.

The unit of each case (memory, time, reason) is tested on its own process in
``tests/integration/sources/test_hostile_upstreams.py``; here one ``cryptoetl worker --once``
meets them together and we read what it left behind: ``runs`` (error, warnings),
``checkpoints`` (cursor, last error), raw keys and records — everything the API and the
dashboard serve — and its output. No part of a sentinel may be anywhere, and the healthy feeds
must still be ingested.
"""

from __future__ import annotations

import psycopg

from cryptoetl.redaction import PARTIAL_SECRET_CHARS
from cryptoetl.stub.faults import Fault
from cryptoetl.stub.server import StubHandle
from tests.e2e.conftest import query, run_worker, worker_env
from tests.pg import TestDatabase

GECKO_KEY = "CG-w0rkerSentinelKey4bcd1234567"  # 31 characters, like the key
FEED_TOKEN = "feed-sentinel-token-0d9c8b7a"
FEED_PASSWORD = "feedpass-sentinel-6e5d4c3b"
SENTINELS = (GECKO_KEY, FEED_TOKEN, FEED_PASSWORD)


def database_text(db: TestDatabase) -> str:
    """Every row of every table, as text."""
    chunks: list[str] = []
    with psycopg.connect(db.admin_url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in tables.fetchall():
            chunks += [str(row[0]) for row in conn.execute(f"SELECT t::text FROM {table} t")]
    return "\n".join(chunks)


def leaked_parts(text: str) -> list[str]:
    width = PARTIAL_SECRET_CHARS
    return [
        secret[i : i + width]
        for secret in SENTINELS
        for i in range(len(secret) - width + 1)
        if secret[i : i + width] in text
    ]


async def test_hostile_upstreams_leave_no_secret_anywhere_and_good_feeds_are_kept(
    clean_db: TestDatabase, stub: StubHandle
) -> None:
    stub.set_faults(
        [
            Fault(path="/api/v3", kind="echo_key", count=1_000),
            Fault(path="/v1/tickers", kind="gzip_bomb", size_bytes=2 * 1024**3, count=1_000),
            Fault(path="/rss/feed", kind="endless", count=1_000),
        ]
    )
    host = stub.base_url.removeprefix("http://")
    feeds = [
        f"{stub.base_url}/rss/feed?token={FEED_TOKEN}",  # endless
        f"http://reader:{FEED_PASSWORD}@{host}/rss/coindesk_empty_elements",
    ]
    env = worker_env(
        clean_db,
        stub,
        "",
        ENABLED_SOURCES="coingecko,coinpaprika,rss",
        COINGECKO_API_KEY=GECKO_KEY,
        COINGECKO_PAGES="1",
        RSS_FEED_URLS=",".join(feeds),
        HTTP_MAX_BODY_BYTES=str(8 * 1024 * 1024),
        HTTP_MAX_ATTEMPTS="2",
        LOG_LEVEL="DEBUG",
        LOG_FORMAT="json",
    )
    result = await run_worker(env, timeout=90)
    assert result.returncode == 1  # two sources failed, on purpose
    errors = dict(query(clean_db, "SELECT source_type, error FROM runs"))
    assert "body contains the credential sent in the x-cg-demo-api-key header" in str(
        errors["coingecko"]
    )
    assert "exceeds HTTP_MAX_BODY_BYTES=8388608 bytes" in str(errors["coinpaprika"])
    assert errors["rss"] is None
    [(warnings,)] = query(clean_db, "SELECT warnings FROM runs WHERE source_type = 'rss'")
    assert len(warnings) == 1  # type: ignore[arg-type]
    assert "feed http://127.0.0.1" in warnings[0]  # type: ignore[index]
    assert "/rss/feed?token=*** failed" in warnings[0]  # type: ignore[index]
    [(cursor,)] = query(clean_db, "SELECT cursor FROM checkpoints WHERE source_type = 'rss'")
    assert list(cursor["feeds"]) == [f"http://reader:***@{host}/rss/coindesk_empty_elements"]  # type: ignore[index]
    summaries = query(
        clean_db, "SELECT summary FROM records WHERE source_type = 'rss' ORDER BY title"
    )
    assert sum(1 for (text,) in summaries if text) == 3  # the empty elements did not win
    stored = database_text(clean_db)
    assert not leaked_parts(stored)
    assert not leaked_parts(result.stdout + result.stderr)
    assert '"event":"http_retry"' not in result.stdout  # hostile bodies are not retried
