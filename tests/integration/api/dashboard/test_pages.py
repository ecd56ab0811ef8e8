"""The operator dashboard pages through the ASGI app (read-only login), on the API test data
written through the worker's write path (see conftest.py). Numbers on the pages are compared
with the database and with the JSON endpoints the pages link to."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.api.anomalies import BASELINE_RUNS
from cryptoetl.api.dashboard.charts import TIMELINE_SLOTS
from cryptoetl.api.prices import MAX_BUCKETS as MAX_CHART_POINTS
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources.base import SNAPSHOT, Batch, MarketRecord
from tests.integration.api.conftest import ApiData, body, sql
from tests.pg import TestDatabase

Client = httpx.AsyncClient
SOURCES = ("csv", "coinpaprika", "coingecko", "rss")
HOSTILE = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>"
VOID = {"meta", "br", "line", "input", "circle", "path", "polyline", "rect", "link", "img"}


class Element:
    def __init__(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tag = tag
        self.attrs = {k: v or "" for k, v in attrs}
        self.text = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Page(HTMLParser):
    """A parsed page: every element with its attributes and its text (descendants included)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, attrs)
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def find(self, tag: str, cls: str | None = None, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str, cls: str | None = None, **attrs: str) -> Element:
        found = self.find(tag, cls, **attrs)
        assert len(found) == 1, (tag, cls, attrs, len(found))
        return found[0]

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) == 1, (element_id, len(found))
        return found[0]

    def value(self, element_id: str) -> str:
        return self.by_id(element_id).attrs["data-value"]

    def hrefs(self) -> set[str]:
        return {e.attrs["href"] for e in self.find("a") if "href" in e.attrs}


async def get_page(client: Client, path: str, status: int = 200) -> Page:
    response = await client.get(path)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'")
    assert "script-src" not in csp
    assert "<script" not in response.text.lower()
    assert response.headers["x-request-id"]
    return Page(response.text)


# --- dashboard --------------------------------------------------------------------------------


async def test_dashboard_rows_match_database_and_json(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    page = await get_page(client, "/")
    assert '<meta http-equiv="refresh" content="30">' in page.html
    rows = [e for e in page.find("tr") if e.attrs.get("id", "").startswith("source-")]
    assert [r.attrs["data-source"] for r in rows] == list(SOURCES)

    per_source = dict(sql(database, "SELECT source_type, count(*) FROM records GROUP BY 1"))
    health = body(await client.get("/health"))
    for source in SOURCES:
        records = int(page.value(f"records-{source}"))
        assert records == per_source[source] == health["sources"][source]["records"]
        (processed,) = sql(
            database,
            "SELECT processed FROM runs WHERE source_type = %s ORDER BY started_at DESC LIMIT 1",
            source,
        )[0]
        assert int(page.value(f"last-run-{source}")) == processed
    assert int(page.value("records-total")) == api_data.total

    status = {s: page.by_id(f"source-{s}").attrs["data-status"] for s in SOURCES}
    assert status["coinpaprika"] == "failing"
    assert status["csv"] == "degraded"  # finished ~10 min ago, interval 60 s: overdue
    assert set(status.values()) <= {"healthy", "degraded", "failing"}
    assert page.by_id("overall").text.strip() == "failing"
    paprika = page.by_id("source-coinpaprika").text
    assert "last run failed" in paprika
    assert "HTTPStatusError: 502 from upstream" in paprika  # the last failure's reason
    assert "overdue" in page.by_id("source-csv").text
    # Status by word and by colour class.
    pills = page.find("span", "pill", data_status="failing")  # overall + coinpaprika
    assert len(pills) == 2
    assert all("s-failing" in p.classes and p.text == "failing" for p in pills)

    # Drift events and rejects of the last successful run and the runs after it: coingecko's
    # last run (a success) recorded one of each; coinpaprika's last success recorded none.
    assert (page.value("drift-coingecko"), page.value("rejects-coingecko")) == ("1", "1")
    assert (page.value("drift-coinpaprika"), page.value("rejects-coinpaprika")) == ("0", "0")

    hrefs = page.hrefs()
    assert {"/health", "/stats", "/runs", "/assets", "/ui/assets"} <= hrefs
    assert {f"/runs?source={s}" for s in SOURCES} <= hrefs
    assert {f"/compare-runs?source={s}" for s in SOURCES} <= hrefs
    assert f"/ui/assets/{api_data.btc_id}" in hrefs  # top assets link to their pages


async def test_next_run_is_last_finish_plus_interval(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    page = await get_page(client, "/")
    for source, interval in (("rss", 600), ("coingecko", 300)):
        (finished,) = sql(
            database,
            "SELECT finished_at FROM runs WHERE source_type = %s ORDER BY started_at DESC LIMIT 1",
            source,
        )[0]
        expected = (finished + timedelta(seconds=interval)).astimezone(UTC).isoformat()
        assert page.value(f"next-run-{source}") == expected


async def test_timeline_bars_match_runs(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    page = await get_page(client, "/")
    for source in SOURCES:
        ids = [str(r) for r in api_data.runs[source]][-TIMELINE_SLOTS:]
        svg = page.one("svg", "timeline", data_source=source)
        assert int(svg.attrs["data-runs"]) == len(ids)
        facts = {
            str(run_id): (status, duration, processed)
            for run_id, status, duration, processed in sql(
                database,
                "SELECT id, status, extract(epoch FROM finished_at - started_at)::float8, "
                "processed FROM runs WHERE source_type = %s",
                source,
            )
        }
        for panel, column in (("duration", 1), ("records", 2)):
            bars = [b for b in page.find("rect", panel) if b.attrs["data-run-id"] in facts]
            assert [b.attrs["data-run-id"] for b in bars] == ids  # oldest first
            for bar in bars:
                status, *values = facts[bar.attrs["data-run-id"]]
                assert bar.attrs["data-status"] == status
                assert f"run-{status}" in bar.classes
                assert float(bar.attrs["data-value"]) == pytest.approx(values[column - 1])
    failed = page.one("rect", "duration", data_run_id=str(api_data.runs["coinpaprika"][-1]))
    assert failed.attrs["fill"] == "#cf222e"


async def test_timeline_anomalies_are_the_compare_runs_anomalies(
    client: Client, api_data: ApiData
) -> None:
    page = await get_page(client, "/")
    markers = {m.attrs["data-run-id"]: m for m in page.find("path", "anomaly-marker")}
    assert markers
    for source in SOURCES:
        ids = [str(r) for r in api_data.runs[source]]
        for run_a, run_b in itertools.pairwise(ids):
            compared = body(await client.get(f"/compare-runs?run_a={run_a}&run_b={run_b}"))
            rules = ",".join(a["rule"] for a in compared["anomalies"])
            marker = markers.get(run_b)
            assert (marker.attrs["data-rules"] if marker else "") == rules, (source, run_b)
            if rules:
                assert f"/compare-runs?run_a={run_a}&run_b={run_b}" in page.hrefs()
    # The latest run's anomalies are flagged beside the status, by rule name.
    for source in SOURCES:
        latest = body(await client.get(f"/compare-runs?source={source}"))["anomalies"]
        row = page.by_id(f"source-{source}").text
        for anomaly in latest:
            assert anomaly["rule"] in row
    assert "duration_over_3x_median" in page.by_id("source-coingecko").text
    assert "success_to_failure" in page.by_id("source-coinpaprika").text


async def test_timeline_shows_twenty_runs_judged_on_the_full_baseline(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    """25 extra rss runs: 20 bars, and a run is still judged against 20 earlier successes."""
    start = datetime.now(UTC) - timedelta(minutes=9)  # newer than the fixture's runs
    ids = []
    for k in range(25):
        run_id = uuid.uuid4()
        ids.append(str(run_id))
        at = start + timedelta(seconds=20 * k)
        processed = 25 + k % 2 if k < 24 else 2500  # productive runs: each brought new entries
        sql(
            database,
            "INSERT INTO runs (id, source_type, started_at, finished_at, heartbeat_at, status, "
            "worker_id, processed, inserted) "
            "VALUES (%s, 'rss', %s, %s, %s, 'success', 'ui-test', %s, %s)",
            run_id,
            at,
            at + timedelta(seconds=2),
            at,
            processed,
            processed,
        )
    try:
        page = await get_page(client, "/")
        svg = page.one("svg", "timeline", data_source="rss")
        assert int(svg.attrs["data-runs"]) == TIMELINE_SLOTS
        shown = [b.attrs["data-run-id"] for b in page.find("rect", "records")]
        assert [i for i in shown if i in ids] == ids[-TIMELINE_SLOTS:]
        compared = body(await client.get(f"/compare-runs?run_a={ids[23]}&run_b={ids[24]}"))
        assert compared["baseline"]["runs"] == BASELINE_RUNS
        rules = ",".join(a["rule"] for a in compared["anomalies"])
        assert "processed_outside_3_sigma" in rules
        marker = page.one("path", "anomaly-marker", data_run_id=ids[24])
        assert marker.attrs["data-rules"] == rules
        # The oldest bar's baseline lies entirely outside the 20 shown runs.
        oldest = ids[-TIMELINE_SLOTS]
        compared = body(await client.get(f"/compare-runs?run_a={ids[4]}&run_b={oldest}"))
        expected = ",".join(a["rule"] for a in compared["anomalies"])
        found = page.find("path", "anomaly-marker", data_run_id=oldest)
        assert (found[0].attrs["data-rules"] if found else "") == expected
    finally:
        sql(database, "DELETE FROM runs WHERE worker_id = 'ui-test'")


async def test_dashboard_escapes_hostile_errors(
    client: Client, database: TestDatabase, api_data: ApiData, restore_bookkeeping: None
) -> None:
    failed = str(api_data.runs["coinpaprika"][-1])
    (original,) = sql(database, "SELECT error FROM runs WHERE id = %s", failed)[0]
    sql(
        database,
        "UPDATE checkpoints SET last_error = %s WHERE source_type = 'coinpaprika'",
        HOSTILE,
    )
    sql(database, "UPDATE runs SET error = %s WHERE id = %s", HOSTILE, failed)
    try:
        page = await get_page(client, "/")
        assert HOSTILE not in page.html
        assert "<img" not in page.html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.html
        assert not page.find("img")
        assert HOSTILE in page.by_id("source-coinpaprika").text  # read back as plain text
    finally:
        sql(database, "UPDATE runs SET error = %s WHERE id = %s", original, failed)


# --- asset pages ------------------------------------------------------------------------------


async def test_asset_page_matches_json_and_database(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    detail = body(await client.get("/assets/bitcoin"))
    for path in ("/ui/assets/bitcoin", f"/ui/assets/{api_data.btc_id}"):
        page = await get_page(client, path)
        assert page.by_id("asset").attrs["data-asset-id"] == str(api_data.btc_id)
        assert "Bitcoin" in page.by_id("asset").text

        mappings = {m.attrs["data-source"]: m for m in page.find("tr", "mapping")}
        assert set(mappings) == {m["source_type"] for m in detail["mappings"]}
        for m in detail["mappings"]:
            row = mappings[m["source_type"]]
            assert row.attrs["data-source-id"] == m["source_id"]
            assert m["method"] in row.text
            assert f"{m['confidence']:.3f}" in row.text
            assert (m["name"] or "—") in row.text  # an unknown name says so, never "None"
        assert "None" not in page.by_id("asset").text
        counts = dict(
            sql(
                database,
                "SELECT source_type, count(*) FROM records WHERE asset_id = %s GROUP BY 1",
                api_data.btc_id,
            )
        )
        assert {s: int(m.attrs["data-records"]) for s, m in mappings.items()} == counts

        prices = {p["series"]["id"]: p["price"] for p in detail["prices"]}
        assert {s: float(page.value(f"price-{s}")) for s in prices} == prices
        assert float(page.value("spread")) == pytest.approx(detail["price_spread_pct"])
        latest = {p["source_type"]: p["price"] for p in detail["prices"]}

        # The chart: 30 hourly CSV candles, each alone in its bucket, and the API snapshots (one
        # observation each in the fixture).
        csv = page.one("polyline", "series", data_source="csv")
        assert int(csv.attrs["data-n"]) == 30
        assert float(csv.attrs["data-first"]) == 49_000.0 - 29 * 10
        assert float(csv.attrs["data-last"]) == 49_000.0
        assert csv.attrs["data-last-time"] == "2025-03-01T11:00:00+00:00"
        assert len(csv.attrs["points"].split()) == 30
        for source in ("coingecko", "coinpaprika"):
            line = page.one("polyline", "series", data_source=source)
            assert line.attrs["data-n"] == "1"
            assert float(line.attrs["data-last"]) == latest[source]

        news = page.find("tr", "news-item")
        assert [int(n.attrs["data-news-id"]) for n in news] == [
            n["id"] for n in detail["recent_news"]
        ]
        links = [a.attrs["href"] for a in page.find("a", "news-title")]
        assert links == [n["url"] for n in detail["recent_news"]]
        assert [a.text for a in page.find("a", "news-title")] == [
            n["title"] for n in detail["recent_news"]
        ]
        assert {f"/assets/{api_data.btc_id}", "/ui/assets", "/"} <= page.hrefs()


async def _write_snapshots(engine: AsyncEngine, records: list[MarketRecord]) -> None:
    """Observations written the worker's way (series counts and bounds kept)."""
    run_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            f"INSERT INTO runs (id, source_type, worker_id) VALUES ('{run_id}', "
            f"'{records[0].source_type}', 'test')"
        )
        resolver = AssetResolver()
        await resolver.ensure_seed(conn)
        await Writer(resolver).write_batch(
            conn, records[0].source_type, run_id, Batch(records=list(records))
        )


def _delete_series(db: TestDatabase, source: str, base: str, venue: str) -> None:
    """Remove the test's own series and runs again (observations first: no foreign key to lean
    on), so that the tests after it see the package's history as it was."""
    ids = "SELECT id FROM market_series WHERE source_type = %s AND base = %s AND venue = %s"
    sql(db, f"DELETE FROM market_observations WHERE series_id IN ({ids})", source, base, venue)
    sql(db, f"DELETE FROM market_series WHERE id IN ({ids})", source, base, venue)
    sql(db, "DELETE FROM runs WHERE worker_id = 'test' AND source_type = %s", source)


async def test_chart_draws_the_price_history_of_each_series(
    client: Client, database: TestDatabase, engine: AsyncEngine, api_data: ApiData
) -> None:
    """Snapshots of one coin from an API source become a line of its series (no raw payload
    is read): one point per bucket of GET /assets/{id}/prices, the newest close last."""
    history = [
        MarketRecord(
            source_type="coingecko",
            venue="coingecko-hist",
            symbol="BTC",
            quote="USD",
            interval=SNAPSHOT,
            coin_id="bitcoin",
            name="Bitcoin",
            price=48_000.0 + k,
            source_timestamp=datetime(2025, 2, 20, tzinfo=UTC) + timedelta(days=k),
        )
        for k in range(4)
    ]
    await _write_snapshots(engine, history)
    try:
        page = await get_page(client, "/ui/assets/bitcoin")
        label = "coingecko-hist bitcoin/USD snapshot"
        line = page.one("polyline", "series", data_series=label)
        prices = body(
            await client.get("/assets/bitcoin/prices", params={"venue": "coingecko-hist"})
        )
        buckets = prices["series"][0]["buckets"]
        assert line.attrs["data-n"] == str(len(buckets)) == "4"
        assert float(line.attrs["data-first"]) == 48_000.0
        assert float(line.attrs["data-last"]) == buckets[-1]["close"] == 48_003.0
        assert label in page.one("span", data_series=label).text
        # A window: only the last 7 days from now (the history is older).
        page = await get_page(client, "/ui/assets/bitcoin?days=7")
        assert not page.find("polyline", "series", data_series=label)
    finally:
        _delete_series(database, "coingecko", "bitcoin", "coingecko-hist")


async def test_price_chart_is_bounded_in_sql(
    client: Client, database: TestDatabase, engine: AsyncEngine, api_data: ApiData
) -> None:
    """3,000 hourly CSV candles of one series: at most MAX_CHART_POINTS buckets, newest kept."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    candles = [
        MarketRecord(
            source_type="csv",
            venue="zz-bounded",
            symbol="BTC",
            quote="USD",
            interval="1h",
            price=100.0 + i,
            source_timestamp=now - timedelta(hours=3000 - i),
        )
        for i in range(1, 3001)
    ]
    await _write_snapshots(engine, candles)
    label = "zz-bounded BTC/USD 1h"
    try:
        page = await get_page(client, "/ui/assets/bitcoin")
        line = page.one("polyline", "series", data_series=label)
        assert int(line.attrs["data-n"]) <= MAX_CHART_POINTS
        assert float(line.attrs["data-last"]) == 3100.0
        assert len(line.attrs["points"].split()) == int(line.attrs["data-n"])
        # 3 days = the newest 72 rows (hours): fewer rows than buckets, every row drawn.
        page = await get_page(client, "/ui/assets/bitcoin?days=3")
        line = page.one("polyline", "series", data_series=label)
        assert int(line.attrs["data-n"]) == 72
        assert float(line.attrs["data-last"]) == 3100.0
    finally:
        _delete_series(database, "csv", "BTC", "zz-bounded")


async def test_asset_page_escapes_hostile_values(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    (asset_id,) = sql(
        database,
        "INSERT INTO assets (slug, symbol, name, normalized_name) "
        "VALUES ('zz-ui-hostile', %s, %s, 'hostile') RETURNING id",
        HOSTILE[:40],
        HOSTILE,
    )[0]
    (news_id,) = sql(
        database,
        "INSERT INTO news_items (source_type, source_id, title, url, author, "
        "mentioned_asset_ids, source_timestamp, content_hash) "
        "VALUES ('rss', 'zz-ui-hostile-news', %s, 'javascript:alert(1)', %s, "
        "ARRAY[%s]::bigint[], now(), '\\x00') RETURNING id",
        HOSTILE,
        HOSTILE,
        asset_id,
    )[0]
    try:
        for path in (f"/ui/assets/{asset_id}", "/ui/assets?search=zz-ui-hostile"):
            page = await get_page(client, path)
            assert HOSTILE not in page.html
            assert "<img" not in page.html
            assert not page.find("img")
            assert "&lt;script&gt;" in page.html
        page = await get_page(client, f"/ui/assets/{asset_id}")
        item = page.one("tr", "news-item", data_news_id=str(news_id))
        assert HOSTILE in item.text
        assert not [a for a in page.find("a") if "javascript" in a.attrs["href"]]
    finally:
        sql(database, "DELETE FROM news_items WHERE id = %s", news_id)
        sql(database, "DELETE FROM news_counts WHERE asset_id = %s", asset_id)
        sql(database, "DELETE FROM assets WHERE id = %s", asset_id)


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/ui/assets/no-such-coin", 404, "no asset with id, slug or symbol"),
        ("/ui/assets/999999", 404, "no asset"),
        ("/ui/assets/%C2%B2", 404, "no asset"),  # a digit to str.isdigit(), not to int()
        ("/ui/assets/%E0%A5%A7", 404, "no asset"),  # Devanagari 1: not asset 1
        ("/ui/assets/bitcoin?days=abc", 400, "days"),
        ("/ui/assets/bitcoin?days=0", 400, "days"),
        ("/ui/assets?page=0", 400, "page"),
        ("/ui/assets?search=" + "x" * 101, 400, "search"),
    ],
)
async def test_errors_are_html_pages(
    client: Client, api_data: ApiData, path: str, status: int, text: str
) -> None:
    page = await get_page(client, path, status)
    assert text in page.one("h1").text


async def test_asset_list_is_paginated_and_searchable(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    (total,) = sql(database, "SELECT count(*) FROM assets")[0]
    page = await get_page(client, "/ui/assets")
    assert int(page.value("list-total")) == total
    rows = [e for e in page.find("tr") if e.attrs.get("data-asset-id")]
    first = [r.attrs["data-asset-id"] for r in rows]
    assert len(first) == min(50, total)
    json_page = body(await client.get("/assets?page=1&page_size=50"))
    assert first == [str(a["id"]) for a in json_page["data"]]
    assert "/ui/assets?page=2" in page.hrefs()
    assert "/assets?page=1&page_size=50" in page.hrefs()

    second = await get_page(client, "/ui/assets?page=2")
    ids = [e.attrs["data-asset-id"] for e in second.elements if e.attrs.get("data-asset-id")]
    assert ids
    assert set(ids).isdisjoint(first)

    found = await get_page(client, "/ui/assets?search=bitcoin")
    names = {e.attrs["data-asset-id"] for e in found.elements if e.attrs.get("data-asset-id")}
    assert names == {str(a["id"]) for a in body(await client.get("/assets?search=bitcoin"))["data"]}
    assert f"/ui/assets/{api_data.btc_id}" in found.hrefs()

    hostile = await get_page(client, "/ui/assets?search=%22%3E%3Cscript%3E")
    assert '<input type="search" name="search" value="&#34;&gt;&lt;script&gt;"' in hostile.html
