"""The response cache: exact because commits notify it, per-request fields stay true, 304s cost
no query, a lost notification connection means no caching, and locks end in bounded 503s."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.api.app import create_app
from cryptoetl.config import load_settings
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources.base import Batch, NewsRecord
from tests.integration.api.conftest import ApiData, body, sql
from tests.integration.api.test_health import Proxy, server_address, with_port
from tests.pg import TestDatabase

RSS_PAGE = "/data?source_type=rss&page_size=5"


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_app(env: dict[str, str]) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    """An app with its start-up and shut-down hooks run (its change listener runs) and a
    client for it. (Litestar's own lifespan context cannot span a fixture's set-up and
    tear-down, which pytest runs in different tasks.)"""
    app = create_app(load_settings(env))
    await _run_hooks(app.on_startup)
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield app, c
    finally:
        await _run_hooks(app.on_shutdown)


async def _run_hooks(hooks: Any) -> None:
    for hook in hooks:
        result = hook()
        if asyncio.iscoroutine(result):
            await result


@pytest.fixture
async def live(
    database: TestDatabase, api_data: ApiData
) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    async with running_app(database.env()) as (app, client):
        await wait_until(lambda: app.state.caches.responses.live)
        yield app, client


async def write_news(engine: AsyncEngine, title: str) -> None:
    """A news item written the worker's way: its commit notifies the API."""
    run_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO runs (id, source_type, worker_id, status) "
            f"VALUES ('{run_id}', 'rss', 'cache-test', 'success')"
        )
        resolver = AssetResolver()
        await resolver.ensure_seed(conn)
        record = NewsRecord(
            source_type="rss",
            source_id=f"cache-test-{uuid.uuid4()}",
            title=title,
            source_timestamp=datetime.now(UTC),
        )
        await Writer(resolver).write_batch(conn, "rss", run_id, Batch(records=[record]))


def notify(db: TestDatabase, source: str) -> None:
    sql(db, "SELECT pg_notify('cryptoetl_data', %s)", source)


async def test_a_commit_invalidates_what_it_changed_and_nothing_else(
    live: tuple[Litestar, httpx.AsyncClient], database: TestDatabase, engine: AsyncEngine
) -> None:
    app, client = live
    first = body(await client.get(RSS_PAGE))
    csv_page = body(await client.get("/data?source_type=csv&page_size=5"))
    # A change behind the cache's back (no notification) is not seen: the page is cached.
    sql(database, "UPDATE news_items SET doc = replace(doc, 'Report', 'Hidden')")
    try:
        assert body(await client.get(RSS_PAGE))["data"] == first["data"]
        # A commit to another source leaves the rss page cached...
        notify(database, "csv")
        await asyncio.sleep(0.2)
        assert body(await client.get(RSS_PAGE))["data"] == first["data"]
        # ...and a commit to rss (the worker's write path) drops it.
        await write_news(engine, "Cache test: Bitcoin rallies")
        rss_key = ("/data", b"source_type=rss&page_size=5")
        await wait_until(lambda: rss_key not in app.state.caches.responses)
        fresh = body(await client.get(RSS_PAGE))
        assert fresh["data"][0]["title"] == "Cache test: Bitcoin rallies"
        assert any("Hidden" in (i["description"] or "") for i in fresh["data"])
        # The csv page was dropped by the csv notification, and is the same when read again.
        assert ("/data", b"source_type=csv&page_size=5") not in app.state.caches.responses
        again = body(await client.get("/data?source_type=csv&page_size=5"))
        assert again["data"] == csv_page["data"]
    finally:
        sql(database, "UPDATE news_items SET doc = replace(doc, 'Hidden', 'Report')")
        sql(database, "DELETE FROM news_items WHERE source_id LIKE 'cache-test-%%'")
        sql(database, "DELETE FROM runs WHERE worker_id = 'cache-test'")
        notify(database, "rss")


async def test_a_rolled_back_write_notifies_nobody(
    live: tuple[Litestar, httpx.AsyncClient], database: TestDatabase
) -> None:
    app, client = live
    await client.get(RSS_PAGE)
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("SELECT pg_notify('cryptoetl_data', 'rss')")
        conn.rollback()
    await asyncio.sleep(0.2)
    assert ("/data", b"source_type=rss&page_size=5") in app.state.caches.responses


async def test_etag_304_and_request_ids_per_request(
    live: tuple[Litestar, httpx.AsyncClient], database: TestDatabase
) -> None:
    _, client = live
    answers = [await client.get(RSS_PAGE) for _ in range(5)]
    etags = {r.headers["etag"] for r in answers}
    assert len(etags) == 1  # the same state: one strong validator
    ids = [body(r)["metadata"]["request_id"] for r in answers]
    assert len(set(ids)) == 5
    assert ids == [r.headers["x-request-id"] for r in answers]
    assert all(r.headers["cache-control"] == "no-cache" for r in answers)
    latencies = [body(r)["metadata"]["api_latency_ms"] for r in answers]
    assert all(latency >= 0 for latency in latencies)
    (etag,) = etags
    again = await client.get(RSS_PAGE, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert "content-length" not in again.headers  # it would have to be the 200's length
    assert again.headers["etag"] == etag
    assert (await client.get(RSS_PAGE, headers={"If-None-Match": '"other"'})).status_code == 200
    notify(database, "rss")
    await asyncio.sleep(0.2)
    # After a change the same validator is rechecked against freshly read data: still equal
    # content (nothing really changed) gives the same ETag, hence a 304.
    assert (await client.get(RSS_PAGE, headers={"If-None-Match": etag})).status_code == 304


async def test_an_answer_from_before_routing_is_the_handlers_answer(
    live: tuple[Litestar, httpx.AsyncClient],
) -> None:
    """The first request is answered by the handler, the next ones before routing: the same
    status, headers and bytes (but the per-request fields), HEAD without the body, and the
    metrics count both under the route."""
    app, client = live
    path = "/data?source_type=rss&page_size=3"
    assert ("/data", b"source_type=rss&page_size=3") not in app.state.caches.responses
    by_handler = await client.get(path)
    from_cache = await client.get(path)
    assert ("/data", b"source_type=rss&page_size=3") in app.state.caches.responses

    def comparable(response: httpx.Response) -> tuple[Any, ...]:
        # The latency's digits make the length vary.
        per_request = ("x-request-id", "content-length")
        headers = {k: v for k, v in response.headers.items() if k not in per_request}
        content = body(response)
        content["metadata"].pop("request_id")
        content["metadata"].pop("api_latency_ms")
        return response.status_code, headers, content

    assert comparable(by_handler) == comparable(from_cache)
    assert set(by_handler.headers) == set(from_cache.headers)
    assert by_handler.headers["content-type"] == "application/json"
    head = await client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    # The length of the GET it stands for (but the latency's digits).
    assert abs(int(head.headers["content-length"]) - len(from_cache.content)) < 8

    before = await _requests_served(client)
    await client.get(path)  # from the cache
    await client.get(path)
    after = await _requests_served(client)
    assert after.get("/data", 0) - before.get("/data", 0) == 2  # counted under their route
    assert after.get("unmatched", 0) == before.get("unmatched", 0)


async def _requests_served(client: httpx.AsyncClient) -> dict[str, float]:
    """GETs answered 200 so far, by route (the request metrics are the process's)."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families((await client.get("/metrics")).text):
        for sample in family.samples:
            labels = sample.labels
            wanted = labels.get("method") == "GET" and labels.get("status") == "200"
            if sample.name == "cryptoetl_http_requests_total" and wanted:
                counts[labels["route"]] = counts.get(labels["route"], 0) + sample.value
    return counts


async def test_no_listener_no_cache_and_reconnecting_starts_empty(
    database: TestDatabase, api_data: ApiData
) -> None:
    """The listener goes through a proxy we cut: while cut nothing is cached (a change made
    meanwhile is seen at once), and the cache comes back by itself, empty."""
    proxy = Proxy(server_address(database.admin_url))
    await proxy.start()
    env = database.env(API_DATABASE_URL=with_port(database.reader_url, proxy.port))
    async with running_app(env) as (app, client):
        caches = app.state.caches
        await wait_until(lambda: caches.responses.live)
        first = body(await client.get(RSS_PAGE))
        await proxy.stop()
        await wait_until(lambda: not caches.responses.live, timeout=15)
        assert (await client.get(RSS_PAGE)).status_code == 503  # never the stale copy
        await proxy.start()
        sql(database, "UPDATE news_items SET doc = replace(doc, 'Report', 'Moved')")
        try:
            await wait_until(lambda: caches.responses.live, timeout=15)
            fresh = body(await client.get(RSS_PAGE))
            assert fresh["data"] != first["data"]
            assert any("Moved" in (i["description"] or "") for i in fresh["data"])
        finally:
            sql(database, "UPDATE news_items SET doc = replace(doc, 'Moved', 'Report')")
    await proxy.stop()


async def test_a_locked_table_is_a_bounded_503_and_health_still_answers(
    database: TestDatabase, api_data: ApiData
) -> None:
    env = database.env() | {"API_STATEMENT_TIMEOUT_MS": "1500", "API_LOCK_TIMEOUT_MS": "500"}
    async with running_app(env) as (_, client):
        with psycopg.connect(database.admin_url) as locker:
            locker.execute("LOCK TABLE market_observations IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            response = await client.get("/data?until=2031-01-01T00:00:00Z")
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            assert body(response)["error"] == "database_busy"
            assert elapsed < 3
            health = await client.get("/health")
            assert health.status_code == 200
            assert body(health)["database_connected"] is True
            locker.rollback()
        assert (await client.get("/data?until=2031-01-01T00:00:00Z")).status_code == 200


async def test_estimated_totals_become_exact_at_the_end_and_stay_exact_past_it(
    live: tuple[Litestar, httpx.AsyncClient],
) -> None:
    """The end of an offset walk proves the total; the process keeps it for the filter set
    (until its sources change), so a page past the end reports it too."""
    _, client = live
    first = body(await client.get("/data?search=bitcoin&page_size=2"))
    assert first["metadata"]["pagination"]["total_is_estimate"] is True
    total = len(body(await client.get("/data?search=bitcoin&page_size=1000"))["data"])
    last_page = -(-total // 2)
    end = body(await client.get(f"/data?search=bitcoin&page_size=2&page={last_page}"))
    assert end["metadata"]["pagination"] | {"next_cursor": None} == {
        "page": last_page,
        "page_size": 2,
        "total_records": total,
        "total_pages": last_page,
        "next_cursor": None,
        "total_is_estimate": False,
    }
    beyond = body(await client.get(f"/data?search=bitcoin&page_size=2&page={last_page + 5}"))
    assert beyond["data"] == []
    assert beyond["metadata"]["pagination"]["total_records"] == total
    assert beyond["metadata"]["pagination"]["total_is_estimate"] is False


async def test_window_totals_are_interpolated_from_bounds_kept_until_a_commit(
    live: tuple[Litestar, httpx.AsyncClient], database: TestDatabase
) -> None:
    """A time window's estimate interpolates each series' kept count and bounds; the bounds
    are read once per filter set (not per window) and again after a commit to their source."""
    app, client = live
    since, until = "2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"
    window = body(await client.get(f"/data?kind=market&since={since}&until={until}&page_size=1"))
    pagination = window["metadata"]["pagination"]
    assert pagination["total_is_estimate"] is True
    interpolated = sql(
        database,
        "SELECT round(sum(CASE WHEN last_ts = first_ts THEN "
        "  CASE WHEN first_ts >= %s AND first_ts < %s THEN observations ELSE 0 END "
        "ELSE observations * greatest(0, date_part('epoch', least(last_ts, %s::timestamptz) "
        "  - greatest(first_ts, %s::timestamptz))) / date_part('epoch', last_ts - first_ts) "
        "END)) FROM market_series WHERE first_ts IS NOT NULL",
        since,
        until,
        until,
        since,
    )[0][0]
    assert interpolated > 1
    assert abs(pagination["total_records"] - interpolated) <= 1

    news = sql(database, "SELECT count(*) FROM news_items")[0][0]

    async def news_total(until: str) -> int:
        page = body(await client.get(f"/data?source_type=rss&until={until}&page_size=1"))
        return int(page["metadata"]["pagination"]["total_records"])

    assert await news_total("2100-01-01T00:00:00Z") == news  # every item is before 2100
    kept = len(app.state.caches.windows)
    change = "UPDATE news_counts SET n = n + %s WHERE asset_id = 0 AND source_type = 'rss'"
    sql(database, change, 1000)  # behind the cache's back: the kept bounds still answer
    try:
        assert await news_total("2100-01-02T00:00:00Z") == news
        assert len(app.state.caches.windows) == kept
        notify(database, "rss")
        await wait_until(lambda: len(app.state.caches.windows) < kept)
        assert await news_total("2100-01-03T00:00:00Z") == news + 1000
    finally:
        sql(database, change, -1000)
        notify(database, "rss")
