"""Request metrics with several Granian workers: every scrape, whichever worker answers it,
counts the requests of all of them (prometheus-client's multiprocess mode), with no label that
tells processes apart; the pipeline series are the database's, the same on every scrape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cryptoetl.api.request_metrics import SERVERS_DIR
from tests.e2e.apiserver import api_server
from tests.pg import TestDatabase

WORKERS = 2
BATCH = 40  # requests of /runs per round, eight connections at a time


def _runs_counted(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert "pid" not in sample.labels
            if sample.name == "cryptoetl_http_requests_total" and sample.labels["route"] == "/runs":
                total += sample.value
    return total


def _pipeline(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line.startswith("cryptoetl_source_"))


async def _send(base: str, n: int) -> None:
    async def one_connection(requests: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(requests):
                assert (await client.get("/runs")).status_code == 200

    await asyncio.gather(*(one_connection(n // 8) for _ in range(8)))


async def test_every_scrape_counts_every_worker(clean_db: TestDatabase, tmp_path: Path) -> None:
    server: list[int] = []
    async with api_server(
        clean_db, tmp_path / "api.log", "--workers", str(WORKERS), pid=server
    ) as base:
        (shared,) = [d for d in SERVERS_DIR.iterdir() if d.name.startswith(f"{server[0]}-")]
        sent = 0
        # Until both workers have answered some (the kernel spreads connections between them).
        for _ in range(10):
            await _send(base, BATCH)
            sent += BATCH
            if len(list(shared.glob("counter_*.db"))) == WORKERS:
                break
        assert len(list(shared.glob("counter_*.db"))) == WORKERS, "one worker answered all"
        scrapes = []
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(8):  # new connections: the scrapes land on either worker
                async with httpx.AsyncClient(base_url=base, timeout=10) as fresh:
                    scrapes.append((await fresh.get("/metrics")).text)
            head = await client.head("/metrics")
            assert head.status_code == 200
        assert {_runs_counted(text) for text in scrapes} == {float(sent)}
        assert len({"\n".join(_pipeline(text)) for text in scrapes}) == 1
        assert _pipeline(scrapes[0])  # never-run sources are reported too
    # A server that stopped leaves its directory to the next one, which removes it.
    assert shared.exists()
    async with (
        api_server(clean_db, tmp_path / "api2.log", "--workers", "1") as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        fresh_start = (await client.get("/metrics")).text
    assert not shared.exists()
    assert _runs_counted(fresh_start) == 0
