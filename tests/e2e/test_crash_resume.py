"""SIGKILL the worker at several points of a large load; after restarts the normalized table
equals a clean run's, row for row (nothing lost, nothing duplicated)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryptoetl.stub.server import StubHandle
from tests.e2e.conftest import query, run_worker, start_worker, worker_env
from tests.pg import KEPT_TOTAL_SQL, TestDatabase, fresh_database

ROWS = 150_000
SYMBOLS = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE")

pytestmark = pytest.mark.slow


def write_large_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = datetime(2015, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("timestamp,symbol,open,high,low,close,volume\n")
        for i in range(rows):
            ts = start + timedelta(hours=i // len(SYMBOLS))
            price = rng.uniform(0.1, 60_000)
            fh.write(
                f"{ts:%Y-%m-%dT%H:%M:%S}Z,{SYMBOLS[i % len(SYMBOLS)]},{price:.4f},"
                f"{price * 1.02:.4f},{price * 0.97:.4f},{price:.4f},{rng.uniform(1e5, 1e9):.0f}\n"
            )


def snapshot(db: TestDatabase) -> list[tuple[object, ...]]:
    """The normalized table, without ingestion-time columns or database-local ids."""
    return query(
        db,
        "SELECT r.source_type, r.source_id, r.kind, r.symbol, r.price, r.open, r.high, r.low, "
        "r.volume_base, r.volume_quote, r.market_cap, r.change_pct, r.source_timestamp, "
        "r.title, r.summary, r.metadata::text, a.slug FROM records r LEFT JOIN assets a "
        "ON a.id = r.asset_id ORDER BY r.source_type, r.source_id",
    )


def _csv_rows(db: TestDatabase) -> int:
    return int(str(query(db, "SELECT count(*) FROM records WHERE source_type = 'csv'")[0][0]))


async def _start_and_kill(db: TestDatabase, env: dict[str, str], extra_s: float) -> bool:
    """Start a full pass, wait until it commits new CSV rows, then SIGKILL it `extra_s` later.

    Waiting for progress (instead of a fixed delay) keeps the kill inside the load however slow
    the machine is. True when the worker was still running when killed.
    """
    before = _csv_rows(db)
    proc = await start_worker(env, "--once", output=asyncio.subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.returncode is None and _csv_rows(db) == before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), extra_s)
    if proc.returncode is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    return True


async def test_sigkill_at_several_points_then_resume_equals_clean_run(
    clean_db: TestDatabase, pg_server: str, stub: StubHandle, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    write_large_csv(big, ROWS)
    env = worker_env(clean_db, stub, str(big), BATCH_SIZE="2000")

    rng = random.Random(20261129)
    killed_mid_load = 0
    for _ in range(3):
        if (
            await _start_and_kill(clean_db, env, rng.uniform(0.0, 1.0))
            and _csv_rows(clean_db) < ROWS
        ):
            killed_mid_load += 1
    assert killed_mid_load >= 2, "the load finished before the worker was killed; make it larger"

    final = await run_worker(env)
    assert final.returncode == 0, final.stdout[-3000:]
    # Runs killed mid-way were closed as interrupted when the next worker took the source.
    statuses = dict(query(clean_db, "SELECT status, count(*) FROM runs GROUP BY status"))
    assert statuses.get("running", 0) == 0
    assert statuses.get("interrupted", 0) >= 1

    with fresh_database(pg_server) as clean:
        clean_env = worker_env(clean, stub, str(big), BATCH_SIZE="2000")
        clean_run = await run_worker(clean_env)
        assert clean_run.returncode == 0
        expected = snapshot(clean)
    got = snapshot(clean_db)
    assert len(got) == len(expected)
    assert got == expected
    csv_rows = query(clean_db, "SELECT count(*) FROM records WHERE source_type = 'csv'")[0][0]
    assert csv_rows == ROWS
    # Exact totals survived the kills too.
    assert query(clean_db, KEPT_TOTAL_SQL)[0][0] == len(got)
