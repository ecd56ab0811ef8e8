"""End-to-end fixtures: the stub upstream on loopback and the real `cryptoetl` command."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from cryptoetl.stub.server import StubHandle, running_stub
from tests.pg import TestDatabase

SENTINEL_PAPRIKA_KEY = "sentinel-paprika-key-7c1e"
SENTINEL_GECKO_KEY = "sentinel-gecko-key-93fa"


@dataclass
class WorkerResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
async def stub(fixtures_dir: Path) -> AsyncIterator[StubHandle]:
    async with running_stub(fixtures_dir) as handle:
        yield handle


@pytest.fixture
def csv_dir(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A private copy of our CSV samples (tests append to them)."""
    target = tmp_path / "csv"
    shutil.copytree(fixtures_dir / "csv", target)
    return target


def worker_env(db: TestDatabase, stub: StubHandle, csv_paths: str, **extra: str) -> dict[str, str]:
    settings = {
        "COINPAPRIKA_BASE_URL": stub.base_url,
        "COINGECKO_BASE_URL": f"{stub.base_url}/api/v3",
        "RSS_FEED_URLS": f"{stub.base_url}/rss",
        "COINPAPRIKA_API_KEY": SENTINEL_PAPRIKA_KEY,
        "COINGECKO_API_KEY": SENTINEL_GECKO_KEY,
        "COINGECKO_PAGES": "3",
        "CSV_PATHS": csv_paths,
        "HTTP_MAX_WAIT_S": "20",
        "LOG_LEVEL": "INFO",
    }
    return db.env(**{**settings, **extra})


async def start_worker(
    env: dict[str, str], *args: str, output: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`cryptoetl worker ARGS` as a real subprocess (the stub keeps serving in this loop)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cryptoetl", "worker", *args, env=env, stdout=output, stderr=output
    )


async def run_worker(env: dict[str, str], *args: str, timeout: float = 120) -> WorkerResult:
    """One pass: `cryptoetl worker --once ARGS`, to completion."""
    proc = await start_worker(env, "--once", *args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return WorkerResult(proc.returncode or 0, out.decode(), err.decode())


def query(db: TestDatabase, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(db.admin_url) as conn:
        return list(conn.execute(sql, params or None).fetchall())
