"""A bounded load on the real API (Granian on loopback, a database filled by the worker): 64
keep-alive connections for LOAD_SECONDS over a mix of /data filters, cursors, searches, /stats,
/health, /assets and deliberately bad parameters. Zero transport errors, every good request
answered 200, every bad one 400. The throughput is printed, never asserted."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest

from cryptoetl.stub.server import running_stub
from tests.e2e.conftest import ApiServer, run_worker, running_api, worker_env
from tests.e2e.rawhttp import HttpClient
from tests.e2e.test_crash_resume import write_large_csv
from tests.pg import TestDatabase, truncate_all

LOAD_SECONDS = float(os.environ.get("CRYPTOETL_LOAD_SECONDS", "15"))
CONNECTIONS = 64
CSV_ROWS = 20_000

# Deliberately bad requests: each must be a clean 400, never a 5xx or a dropped connection.
BAD = [
    "/data?page_size=0",
    "/data?page_size=100000",
    "/data?kind=coins",
    "/data?source_type=nasdaq",
    "/data?since=yesterday",
    "/data?since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
    "/data?cursor=not-a-cursor",
    "/data?page=2&cursor=AQ",
    "/data?page=abc",
    "/runs?limit=0",
    "/runs?source=ftp",
    "/stats?limit=-5",
    "/compare-runs",
    "/compare-runs?run_a=123",
    "/assets?page_size=5000",
]


@pytest.fixture(scope="module")
async def load_api(
    database: TestDatabase, fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    work = tmp_path_factory.mktemp("load")
    big = work / "hourly.csv"
    write_large_csv(big, CSV_ROWS)
    truncate_all(database)
    async with running_stub(fixtures_dir) as stub:
        env = worker_env(database, stub, f"{fixtures_dir / 'csv'},{big}")
        for _ in range(2):
            result = await run_worker(env)
            assert result.returncode == 0, result.stdout[-3000:]
    async with running_api(database.env(), work) as server:
        yield server


async def _good_paths(base_url: str) -> list[str]:
    """Filters, searches, offset pages and cursor pages (cursors taken from real answers)."""
    paths = [
        "/data",
        "/data?page_size=100",
        "/data?page_size=1000",
        "/data?page=3&page_size=25",
        "/data?source_type=csv",
        "/data?source_type=coingecko,coinpaprika",
        "/data?kind=news",
        "/data?kind=market&asset=BTC",
        "/data?asset=bitcoin",
        "/data?asset=ethereum&source_type=csv",
        "/data?search=bitcoin",
        "/data?search=ETF%20inflows",
        "/data?since=2016-01-01T00:00:00Z&until=2016-02-01T00:00:00Z",
        "/data?kind=news&category=Bitcoin",
        "/stats",
        "/stats?limit=5",
        "/health",
        "/runs",
        "/runs?source=csv&limit=5",
        "/compare-runs?source=csv",
        "/assets",
        "/assets?search=coin",
        "/assets/bitcoin",
        "/metrics",
    ]
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for start in ("/data?page_size=200", "/data?source_type=csv&page_size=500"):
            path = start
            for _ in range(4):  # cursor pages at increasing depth
                response = await client.get(path)
                assert response.status_code == 200, response.text
                cursor = response.json()["metadata"]["pagination"]["next_cursor"]
                assert cursor, "the table is deep enough for cursor pages"
                path = f"{start}&cursor={quote(cursor)}"
                paths.append(path)
        for path in paths:  # every good path is good before the load starts
            response = await client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return paths


async def test_bounded_load_has_no_errors(load_api: ApiServer) -> None:
    good = await _good_paths(load_api.base_url)
    mix = [(p, 200) for p in good] + [(p, 400) for p in BAD]
    port = urlsplit(load_api.base_url).port
    assert port is not None
    statuses: Counter[tuple[int, int]] = Counter()  # (expected, got)
    errors: list[str] = []
    latencies: list[float] = []
    stop_at = time.perf_counter() + LOAD_SECONDS

    async def connection(seed: int) -> None:
        rng = random.Random(seed)
        client = await HttpClient.connect("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                path, expected = rng.choice(mix)
                started = time.perf_counter()
                try:
                    status, _ = await client.get(path)
                except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as exc:
                    errors.append(f"{path}: {type(exc).__name__}: {exc}")
                    await client.close()
                    client = await HttpClient.connect("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[(expected, status)] += 1
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(seed) for seed in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    print(
        f"\nload: {total} requests in {elapsed:.1f}s = {total / elapsed:.0f} req/s over "
        f"{CONNECTIONS} connections, p99 {p99:.1f} ms; (expected, got): {dict(statuses)}; "
        f"transport errors: {len(errors)}"
    )
    assert not errors, errors[:10]
    unexpected = {k: n for k, n in statuses.items() if k[0] != k[1]}
    assert not unexpected, unexpected
    assert statuses[(400, 400)] > 0
    assert statuses[(200, 200)] > 0
    # Still healthy afterwards, and nothing unhandled was logged.
    async with httpx.AsyncClient(base_url=load_api.base_url, timeout=10) as client:
        assert (await client.get("/health")).status_code == 200
    assert load_api.proc.poll() is None
    assert "Traceback" not in load_api.log()
