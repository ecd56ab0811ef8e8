"""The long-running daemon: schedule, manual trigger, SIGTERM within 10 s (even with a file read
stuck for good), replicas and locks."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import psycopg

from cryptoetl.pipeline.runs import LOCK_NAMESPACE, lock_key
from cryptoetl.stub.server import StubHandle
from tests.e2e.conftest import query, run_worker, start_worker, worker_env
from tests.e2e.test_crash_resume import write_large_csv
from tests.pg import TestDatabase


async def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def _settled_count(db: TestDatabase, sql: str, quiet_s: float = 1.5) -> int:
    """The count once it has held still for ``quiet_s`` (bounded by _wait_for's timeout)."""
    seen = [-1, time.monotonic()]

    def still() -> bool:
        count = int(str(query(db, sql)[0][0]))
        if count != seen[0]:
            seen[:] = [count, time.monotonic()]
        return time.monotonic() - seen[1] >= quiet_s

    await _wait_for(still)
    return int(seen[0])


async def test_daemon_runs_at_start_on_trigger_and_stops_on_sigterm(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path
) -> None:
    env = worker_env(
        clean_db,
        stub,
        str(csv_dir),
        INTERVALS_S="csv=3600,coinpaprika=3600,coingecko=3600,rss=3600",
    )
    proc = await start_worker(env)
    try:

        def finished_runs() -> int:
            return int(
                str(query(clean_db, "SELECT count(*) FROM runs WHERE status = 'success'")[0][0])
            )

        await _wait_for(lambda: finished_runs() == 4)
        beats = query(clean_db, "SELECT count(*) FROM worker_heartbeats")[0][0]
        assert beats == 1
        # SIGUSR1 is the on-demand trigger of a running daemon.
        proc.send_signal(signal.SIGUSR1)
        await _wait_for(lambda: finished_runs() == 8)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 12)
        assert time.monotonic() - started < 10
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b'"worker_stopped"' in out
    assert query(clean_db, "SELECT count(*) FROM runs WHERE status = 'running'")[0][0] == 0
    assert query(clean_db, "SELECT count(*) FROM worker_heartbeats")[0][0] == 0


async def test_sigterm_during_a_load_closes_the_run_as_interrupted(
    clean_db: TestDatabase, stub: StubHandle, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    write_large_csv(big, 60_000)
    env = worker_env(clean_db, stub, str(big), BATCH_SIZE="1000", ENABLED_SOURCES="csv")
    proc = await start_worker(env, output=asyncio.subprocess.DEVNULL)
    await _wait_for(
        lambda: int(str(query(clean_db, "SELECT count(*) FROM records")[0][0])) > 0, timeout=30
    )
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 12)
    assert time.monotonic() - started < 10
    status, error = query(clean_db, "SELECT status, error FROM runs")[0]
    assert status == "interrupted"
    assert "stop" in str(error)
    # What was committed matches the checkpoint: resuming loads the rest exactly once.
    resumed = await run_worker(env, "--source", "csv")
    assert resumed.returncode == 0
    assert query(clean_db, "SELECT count(*) FROM records")[0][0] == 60_000
    assert query(clean_db, "SELECT sum(processed) FROM runs")[0][0] == 60_000


async def test_a_source_locked_by_another_replica_is_skipped(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path
) -> None:
    """Advisory lock: while another worker holds `rss`, this one skips it and says so."""
    with psycopg.connect(clean_db.admin_url, autocommit=True) as other_replica:
        other_replica.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, lock_key("rss")))
        result = await run_worker(worker_env(clean_db, stub, str(csv_dir)), "--source", "rss")
    assert result.returncode == 0
    assert '"run_skipped"' in result.stdout
    assert query(clean_db, "SELECT count(*) FROM runs WHERE source_type = 'rss'")[0][0] == 0


# `cryptoetl worker` whose file reads hang for good past a byte offset, as a read on a hung
# network filesystem does (the thread sits in the kernel; nothing can interrupt it).
_STUCK_READER = """
import os, sys, threading
real_pread, after = os.pread, int(sys.argv[1])

def pread(fd, size, offset):
    if offset >= after:
        print("reader stuck", file=sys.stderr, flush=True)
        threading.Event().wait()
    return real_pread(fd, size, offset)

os.pread = pread
from cryptoetl.cli import main
raise SystemExit(main(["worker"]))
"""


async def test_sigterm_ends_the_daemon_in_time_even_with_a_read_stuck_for_good(
    clean_db: TestDatabase, stub: StubHandle, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    write_large_csv(big, 60_000)
    env = worker_env(clean_db, stub, str(big), BATCH_SIZE="1000", ENABLED_SOURCES="csv")
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _STUCK_READER,
            str(big.stat().st_size // 3),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err.fileno(),
        )
    try:
        await _wait_for(lambda: "reader stuck" in stderr.read_text(), timeout=60)
        # Batches parsed before the read hung are still being written; once they are, the run
        # can only be waiting for its source.
        assert await _settled_count(clean_db, "SELECT count(*) FROM records") > 0
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        stopped_in = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert stopped_in < 10, stopped_in
    assert proc.returncode == 0
    status, error = query(clean_db, "SELECT status, error FROM runs")[0]
    assert status == "interrupted"
    assert error == "worker stopping: run interrupted while waiting for its source"
