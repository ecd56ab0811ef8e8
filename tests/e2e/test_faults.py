"""Upstream faults through the stub: every case ends in a recorded success after retries or a
recorded failure with its reason; the worker process never dies."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cryptoetl.stub.server import StubHandle
from tests.e2e.conftest import query, run_worker, worker_env
from tests.pg import TestDatabase

PATHS = {"coinpaprika": "/v1/tickers", "coingecko": "/api/v3/coins/markets", "rss": "/rss"}


def _run(db: TestDatabase, source: str) -> tuple[str, str | None, int]:
    status, error, inserted = query(
        db,
        "SELECT status, error, inserted FROM runs WHERE source_type = %s "
        "ORDER BY started_at DESC LIMIT 1",
        source,
    )[0]
    return str(status), None if error is None else str(error), int(str(inserted))


RECOVERS = [
    ("429*2:retry_after=1", "coinpaprika"),
    ("429*1:retry_after=1:retry_after_date=true", "coingecko"),
    ("500*2", "rss"),
    ("502*1", "coinpaprika"),
    ("503*2", "coingecko"),
    ("reset*2", "coinpaprika"),
    ("delay*1:delay_s=3", "rss"),
]


@pytest.mark.parametrize(("fault", "source"), RECOVERS)
async def test_transient_fault_recovers_after_retries(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, fault: str, source: str
) -> None:
    stub.set_faults(f"{PATHS[source]}:{fault}")
    env = worker_env(clean_db, stub, str(csv_dir), HTTP_TIMEOUT_S="1.5", HTTP_MAX_ATTEMPTS="4")
    result = await run_worker(env, "--source", source)
    assert result.returncode == 0, result.stdout[-2000:]
    status, error, inserted = _run(clean_db, source)
    assert (status, error) == ("success", None)
    assert inserted > 0
    calls = [r for r in stub.requests if r.path.startswith(PATHS[source])]
    assert len(calls) >= 2, "the fault was retried"
    assert '"event": "http_retry"' in result.stdout or '"event":"http_retry"' in result.stdout


async def test_retry_after_is_respected(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path
) -> None:
    stub.set_faults("/v1/tickers:429*1:retry_after=2")
    env = worker_env(clean_db, stub, str(csv_dir))
    result = await run_worker(env, "--source", "coinpaprika")
    assert result.returncode == 0
    calls = [r.time for r in stub.requests if r.path == "/v1/tickers"]
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 2.0


FAILS = [
    ("truncate*always", "coinpaprika", "JSON"),
    ("malformed*always", "coingecko", "JSON"),
    ("empty*always", "coinpaprika", "empty"),
    ("ratelimit_text*always", "coingecko", "Rate limit"),
    ("401*always", "coinpaprika", "401"),
    ("404*always", "rss", "404"),
    ("500*always", "coingecko", "500"),
    ("429*always:retry_after=600", "coinpaprika", "Retry-After"),
    ("malformed*always", "rss", ""),
]


@pytest.mark.parametrize(("fault", "source", "reason"), FAILS)
async def test_permanent_fault_is_a_recorded_failure(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, fault: str, source: str, reason: str
) -> None:
    stub.set_faults(f"{PATHS[source]}:{fault}")
    env = worker_env(clean_db, stub, str(csv_dir), HTTP_MAX_ATTEMPTS="2", HTTP_MAX_WAIT_S="3")
    started = time.monotonic()
    result = await run_worker(env, "--source", source, "--source", "csv")
    assert time.monotonic() - started < 60
    assert result.returncode == 1, "a failed source makes --once exit 1"
    assert "Traceback" not in result.stderr
    status, error, _ = _run(clean_db, source)
    assert status == "failed"
    assert error
    assert reason.lower() in error.lower()
    # One failing source never stops the others.
    assert _run(clean_db, "csv")[0] == "success"
    checkpoint = query(
        clean_db, "SELECT status, last_error FROM checkpoints WHERE source_type = %s", source
    )
    assert checkpoint[0][0] == "failed"
    assert checkpoint[0][1] == error


async def test_renamed_field_is_drift_with_candidate(
    clean_db: TestDatabase, stub: StubHandle, tmp_path: Path, fixtures_dir: Path, csv_dir: Path
) -> None:
    """A payload whose field was renamed upstream: drift recorded, rows still ingested."""
    import shutil

    from cryptoetl.stub.server import running_stub

    renamed = tmp_path / "fixtures"
    shutil.copytree(fixtures_dir, renamed)
    tickers = renamed / "coinpaprika" / "tickers.json"
    tickers.write_text(tickers.read_text().replace('"last_updated"', '"last_updated_at"'))
    async with running_stub(renamed) as drifted:
        env = worker_env(clean_db, drifted, str(csv_dir))
        result = await run_worker(env, "--source", "coinpaprika")
    events = query(
        clean_db,
        "SELECT field, change, candidate_field, similarity FROM drift_events "
        "WHERE source_type = 'coinpaprika' ORDER BY field",
    )
    fields = {(f, c) for f, c, *_ in events}
    assert ("last_updated_at", "added") in fields
    removed = [e for e in events if e[0] == "last_updated" and e[1] == "removed"]
    assert removed
    assert removed[0][2] == "last_updated_at"
    assert float(str(removed[0][3])) > 0.6
    assert '"schema_drift"' in result.stdout
    drift_count = query(
        clean_db,
        "SELECT drift_events FROM runs WHERE source_type = 'coinpaprika' ORDER BY started_at DESC",
    )[0][0]
    assert drift_count == len(events)
