"""The dashboard end to end, in a real browser.

The worker fills the database from the stub upstream (`cryptoetl worker --once`, three passes,
the last with CoinPaprika failing), the API runs as `cryptoetl api` (Granian) on the reader
login, and headless Chromium driven by Playwright opens the pages, with JavaScript on and off.
The numbers on screen are compared with the database and the JSON API. Screenshots go to
``docs/dashboard.png`` and ``docs/asset.png`` (shown by the README) when
``UPDATE_SCREENSHOTS=1``, else to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cryptoetl.api.dashboard.format import fmt_pct
from cryptoetl.api.dashboard.views import series_label
from cryptoetl.api.schemas import SeriesRef
from cryptoetl.config import load_settings
from cryptoetl.stub.server import StubHandle
from tests.e2e.apiserver import api_server
from tests.e2e.conftest import query, run_worker, worker_env
from tests.pg import REPO_ROOT, TestDatabase

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's screenshots are refreshed only on request, so test runs leave the tree clean.
DOCS = REPO_ROOT / "docs"
SOURCES = ("csv", "coinpaprika", "coingecko", "rss")
FAILING_RED = "rgb(207, 34, 46)"  # --bad in the dashboard's stylesheet


def _chromium() -> Path | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return Path(found)
    return CHROMIUM if CHROMIUM.exists() else None


pytestmark = pytest.mark.skipif(
    _chromium() is None,
    reason="no Chromium installed (apt-get install -y chromium); the dashboard browser test "
    "needs /usr/bin/chromium",
)


async def _fill(db: TestDatabase, stub: StubHandle, csv_dir: Path) -> None:
    env = worker_env(db, stub, str(csv_dir))
    for _ in range(2):
        result = await run_worker(env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stub.set_faults("/v1/tickers:500*always")
    failing = worker_env(db, stub, str(csv_dir), HTTP_MAX_ATTEMPTS="2", HTTP_MAX_WAIT_S="2")
    result = await run_worker(failing)
    assert result.returncode == 1, "coinpaprika fails, so --once exits 1"
    stub.set_faults("")


def _expected_status(db: TestDatabase, source: str) -> str:
    """CoinPaprika's last pass failed; the others succeeded, and are degraded only when the
    upstream time of their newest observation is past the default FRESHNESS_S (the stub serves
    recorded samples, whose timestamps may be old)."""
    if source == "coinpaprika":
        return "failing"
    threshold = load_settings({}).freshness_for(source)
    (newest,) = query(
        db,
        "SELECT max(source_timestamp) FROM news_items"
        if source == "rss"
        else "SELECT max(last_ts) FROM market_series WHERE source_type = %s",
        *(() if source == "rss" else (source,)),
    )[0]
    assert isinstance(newest, datetime)
    stale = threshold is not None and (datetime.now(UTC) - newest).total_seconds() > threshold
    return "degraded" if stale else "healthy"


async def _check_dashboard(page: Any, base: str, db: TestDatabase, api: httpx.AsyncClient) -> None:
    response = await page.goto(f"{base}/")
    assert response.status == 200
    assert await page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "30"
    health = (await api.get("/health")).json()
    counts = dict(query(db, "SELECT source_type, count(*) FROM records GROUP BY 1"))
    latest = {
        str(s): (str(status), int(str(processed)))
        for s, status, processed in query(
            db,
            "SELECT DISTINCT ON (source_type) source_type, status, processed FROM runs "
            "ORDER BY source_type, started_at DESC",
        )
    }
    for source in SOURCES:
        row = page.locator(f"#source-{source}")
        await row.wait_for(state="visible")
        records = int(await page.locator(f"#records-{source}").get_attribute("data-value"))
        assert records == counts[source] == health["sources"][source]["records"]
        shown = (await page.locator(f"#records-{source}").inner_text()).replace(",", "")
        assert int(shown) == records
        last_run = int(await page.locator(f"#last-run-{source}").get_attribute("data-value"))
        assert last_run == latest[source][1]
        word = (await row.locator(".pill").inner_text()).strip()
        assert word == _expected_status(db, source), source
        assert word == health["sources"][source]["health"]  # one set of rules for both
        if word == "degraded":  # the stub replays recorded samples: their data is old
            assert "newest data is" in await row.inner_text()
    paprika = page.locator("#source-coinpaprika")
    assert "last run failed" in await paprika.inner_text()
    assert health["sources"]["coinpaprika"]["last_error"] in await paprika.inner_text()
    assert (await page.locator("#overall .pill").inner_text()).strip() == "failing"

    # The run timeline: three runs per source, coloured by status, anomalies flagged.
    for source in SOURCES:
        runs = (await api.get(f"/runs?source={source}")).json()["data"]
        svg = page.locator(f'svg.timeline[data-source="{source}"]')
        box = await svg.bounding_box()
        assert box is not None
        assert box["width"] > 300
        assert box["height"] > 100
        bars = svg.locator("rect.duration")
        assert await bars.count() == len(runs) == 3
        for i, run in enumerate(reversed(runs)):  # oldest left
            bar = bars.nth(i)
            assert await bar.get_attribute("data-run-id") == run["id"]
            assert await bar.get_attribute("data-status") == run["status"]
            records = svg.locator(f'rect.records[data-run-id="{run["id"]}"]')
            assert int(float(await records.get_attribute("data-value"))) == run["processed"]
    failed = (await api.get("/runs?source=coinpaprika&limit=1")).json()["data"][0]
    assert failed["status"] == "failed"
    bar = page.locator(f'rect.duration[data-run-id="{failed["id"]}"]')
    assert await bar.get_attribute("fill") == "#cf222e"
    compared = (await api.get("/compare-runs?source=coinpaprika")).json()
    marker = page.locator(f'path.anomaly-marker[data-run-id="{failed["id"]}"]')
    rules = ",".join(a["rule"] for a in compared["anomalies"])
    assert "success_to_failure" in rules
    assert await marker.get_attribute("data-rules") == rules
    anomaly_text = await page.locator("#timeline-coinpaprika .anomalies").inner_text()
    assert "success_to_failure" in anomaly_text


async def _check_asset(page: Any, base: str, db: TestDatabase, api: httpx.AsyncClient) -> None:
    (btc_id,) = query(db, "SELECT id FROM assets WHERE slug = 'bitcoin'")[0]
    response = await page.goto(f"{base}/ui/assets/bitcoin")
    assert response.status == 200
    detail = (await api.get("/assets/bitcoin")).json()
    assert await page.locator("#asset").get_attribute("data-asset-id") == str(btc_id)
    prices = {p["series"]["id"]: p for p in detail["prices"]}
    assert {p["source_type"] for p in prices.values()} == {"csv", "coingecko", "coinpaprika"}
    for series_id, price in prices.items():
        cell = page.locator(f"#price-{series_id}")
        assert float(await cell.get_attribute("data-value")) == price["price"]
    spread = float(await page.locator("#spread").get_attribute("data-value"))
    assert spread == pytest.approx(detail["price_spread_pct"])
    shown = fmt_pct(detail["price_spread_pct"])
    assert shown in await page.locator("#spread").inner_text()

    usd_chart = page.locator('div.chart[data-quote="USD"] svg.price-chart')
    box = await usd_chart.bounding_box()
    assert box is not None
    assert box["width"] > 600
    history = (await api.get("/assets/bitcoin/prices")).json()
    drawn = 0
    for entry in history["series"]:
        line = page.locator(
            f'polyline.series[data-series="{series_label(SeriesRef(**entry["series"]))}"]'
        )
        if not entry["buckets"]:
            assert await line.count() == 0
            continue
        n = int(await line.get_attribute("data-n"))
        assert n == len(entry["buckets"]) <= 500
        assert len((await line.get_attribute("points")).split()) == n
        last = entry["buckets"][-1]["close"]
        assert float(await line.get_attribute("data-last")) == last
        assert last == prices[entry["series"]["id"]]["price"]  # the newest observation
        drawn += 1
    assert drawn >= 3
    news = page.locator("tr.news-item")
    assert await news.count() == len(detail["recent_news"]) > 0
    first_title = (await news.nth(0).locator(".news-title").inner_text()).strip()
    assert first_title == detail["recent_news"][0]["title"].strip()
    hrefs = await page.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert f"/assets/{btc_id}" in hrefs


async def _check_without_javascript(context: Any, base: str, db: TestDatabase) -> None:
    page = await context.new_page()
    response = await page.goto(f"{base}/")
    assert response.status == 200
    assert await page.locator("svg.timeline").count() == len(SOURCES)
    assert (await page.locator("#source-coinpaprika .pill").inner_text()).strip() == "failing"
    (csv_count,) = query(db, "SELECT count(*) FROM records WHERE source_type = 'csv'")[0]
    assert int(await page.locator("#records-csv").get_attribute("data-value")) == csv_count
    # Navigation by plain links: dashboard -> asset list -> an asset.
    await page.locator('nav.top a[href="/ui/assets"]').click()
    await page.wait_for_url(f"{base}/ui/assets")
    await page.locator("tr[data-asset-id] a", has_text="Bitcoin").first.click()
    await page.wait_for_load_state()
    assert await page.locator("svg.price-chart polyline.series").count() >= 3
    assert await page.locator("#spread").get_attribute("data-value")
    await page.close()


async def test_dashboard_in_a_browser(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    chromium = _chromium()
    assert chromium is not None
    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(exist_ok=True)
    async with (
        api_server(clean_db, tmp_path / "api.log") as base,
        httpx.AsyncClient(base_url=base, timeout=10) as api,
        async_playwright() as pw,
    ):
        # Before any run: every source "never ran", the page still renders.
        empty = await api.get("/")
        assert empty.status_code == 200
        assert empty.text.count("never ran") >= len(SOURCES)
        assert '<span id="overall"><span class="pill s-degraded"' in empty.text
        await _fill(clean_db, stub, csv_dir)
        browser = await pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1360, "height": 900})
            page = await context.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            await _check_dashboard(page, base, clean_db, api)
            # Status by colour as well as by word.
            colour = await page.locator("#source-coinpaprika .pill").evaluate(
                "el => getComputedStyle(el).color"
            )
            assert colour == FAILING_RED
            await page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
            await _check_asset(page, base, clean_db, api)
            await page.screenshot(path=str(shots / "asset.png"), full_page=True)
            assert not [m for m in console if "Content Security Policy" in m], console

            no_js = await browser.new_context(
                java_script_enabled=False, viewport={"width": 1360, "height": 900}
            )
            await _check_without_javascript(no_js, base, clean_db)
        finally:
            await browser.close()
