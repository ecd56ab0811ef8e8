"""PostgreSQL goes away under the worker daemon and the API, then comes back.

The shared server is never touched: the worker and the API reach it through a loopback TCP proxy
that the test cuts (every connection aborted, new ones refused) in the middle of a CSV load, and
restores a few seconds later. Meanwhile ``/health`` answers 503 ``unhealthy`` and ``/data`` a
clean JSON 503; the worker logs the failure and backs off. After the restore both recover
without a restart: the API answers 200 again, the worker completes a new successful run that
resumes the load from its checkpoint, and the run the outage cut is closed as ``failed`` with
the database's account of why by the next run of its source.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from cryptoetl.stub.server import StubHandle
from tests.e2e.conftest import TcpProxy, query, running_api, start_worker, via, worker_env
from tests.e2e.test_crash_resume import write_large_csv
from tests.pg import KEPT_TOTAL_SQL, TestDatabase

ROWS = 100_000
OUTAGE_S = 5.0


async def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _count(db: TestDatabase, sql: str) -> int:
    return int(str(query(db, sql)[0][0]))


def _events(log: str) -> list[dict[str, object]]:
    found = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


async def test_database_outage_then_recovery_without_restart(
    clean_db: TestDatabase, stub: StubHandle, pg_proxy: TcpProxy, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    write_large_csv(big, ROWS)
    proxied_writer = via(clean_db.admin_url, pg_proxy.port)
    proxied_reader = via(clean_db.reader_url, pg_proxy.port)
    env = worker_env(
        clean_db,
        stub,
        str(big),
        DATABASE_URL=proxied_writer,
        API_DATABASE_URL=proxied_reader,
        ENABLED_SOURCES="csv",
        INTERVALS_S="csv=2",
        BATCH_SIZE="1000",
        STALE_AFTER_S="3600",
    )
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        worker = await start_worker(env, output=out.fileno())  # the daemon, not --once
    try:
        async with (
            running_api(env, tmp_path) as api,
            httpx.AsyncClient(base_url=api.base_url, timeout=15) as client,
        ):
            # The load is under way: a run is open and some batches are committed.
            await _wait_for(
                lambda: (
                    _count(clean_db, "SELECT count(*) FROM records") > 0
                    and _count(clean_db, "SELECT count(*) FROM runs WHERE status = 'running'") == 1
                ),
                60,
                "the first batches of the load",
            )
            assert (await client.get("/data?page_size=5")).status_code == 200
            loaded_before = _count(clean_db, "SELECT count(*) FROM records")
            assert loaded_before < ROWS, "the load finished before the outage; make it larger"

            await pg_proxy.cut()
            cut_at = time.monotonic()
            health = await client.get("/health")
            assert health.status_code == 503
            assert health.headers["content-type"].startswith("application/json")
            body = health.json()
            assert body["status"] == "unhealthy"
            assert body["database_connected"] is False
            for path in ("/data", "/data?source_type=csv&page_size=10", "/stats", "/runs"):
                response = await client.get(path)
                assert response.status_code == 503, (path, response.text[:300])
                assert response.headers["content-type"].startswith("application/json")
                error = response.json()
                assert error["error"] == "database_unavailable"
                assert error["request_id"] == response.headers["x-request-id"]
                assert "Traceback" not in response.text
            assert worker.returncode is None, "the worker survives the outage"
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
            outage_events = {str(e.get("event")) for e in _events(worker_log.read_text())}
            assert worker.returncode is None

            await pg_proxy.restore()
            restored_at = time.time()
            # The API recovers by itself.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if (await client.get("/health")).status_code == 200:
                    break
                await asyncio.sleep(0.2)
            health = await client.get("/health")
            assert health.status_code == 200, health.text
            assert health.json()["database_connected"] is True
            page = await client.get("/data?source_type=csv&page_size=10")
            assert page.status_code == 200
            assert page.json()["metadata"]["pagination"]["total_records"] >= loaded_before

            # The worker recovers by itself: a new run succeeds and finishes the load.
            def new_success() -> bool:
                return (
                    _count(
                        clean_db,
                        "SELECT count(*) FROM runs WHERE status = 'success' "
                        f"AND started_at >= to_timestamp({restored_at - 1})",
                    )
                    > 0
                )

            await _wait_for(new_success, 60, "a successful run after the restore")
            assert worker.returncode is None
            assert "Traceback" not in api.log()
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(worker.wait(), 12)
            except TimeoutError:
                worker.kill()
                await worker.wait()
    assert worker.returncode == 0
    log = worker_log.read_text()
    events = [str(e.get("event")) for e in _events(log)]
    # The failure was logged and the daemon backed off instead of dying.
    assert outage_events & {"run_failed", "run_not_started", "database_wait"}, outage_events
    assert "run_not_started" in events
    backoffs = [
        e
        for e in _events(log)
        if e.get("event") == "run_scheduled" and e.get("last_status") == "not_started"
    ]
    assert backoffs
    assert all(float(str(e["in_s"])) >= 1 for e in backoffs)
    # Nothing lost, nothing duplicated, nothing left running.
    assert _count(clean_db, "SELECT count(*) FROM records") == ROWS
    assert _count(clean_db, KEPT_TOTAL_SQL) == ROWS
    assert _count(clean_db, "SELECT count(*) FROM runs WHERE status = 'running'") == 0
    # The run cut mid-load could not record its end then; it is closed with the database's
    # account of why (written by the next run), not as a dead worker's.
    cut = query(clean_db, "SELECT error FROM runs WHERE status = 'failed'")
    assert cut, query(clean_db, "SELECT status, error FROM runs")
    for (error,) in cut:
        assert str(error).startswith(
            (
                "the connection to the database was lost",
                "cannot reach the database",
                "the database ended the connection",
            )
        ), error
    assert "run_end_recorded" in events
    assert _count(clean_db, "SELECT count(*) FROM runs WHERE error LIKE 'closed at%%'") == 0
