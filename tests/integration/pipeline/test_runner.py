"""A source run on a real PostgreSQL: progress lines of a CSV load, and runs the database cuts
(a terminated backend, a switch to read-only, a database that is gone) ending with the
database's own account of why, recorded late when the database would not take it at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.config import DatabaseUrl, Settings, load_settings
from cryptoetl.db.engine import make_engine
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.runner import SourceRunner
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources.base import Batch, JsonDict, SourceType
from cryptoetl.sources.csv.source import CsvSource
from tests.e2e.conftest import free_port, via
from tests.pg import TestDatabase

APP = "cryptoetl-runner-test"  # the runner's connections, and only they, are cut


def _settings(db: TestDatabase, **env: str) -> Settings:
    return load_settings({"DATABASE_URL": db.admin_url, "BATCH_SIZE": "1000", **env})


async def _runner(
    url: str, settings: Settings, *, progress_every_s: float = 10.0
) -> tuple[AsyncEngine, SourceRunner]:
    engine = make_engine(DatabaseUrl(url, "DATABASE_URL"), application_name=APP)
    return engine, SourceRunner(
        engine,
        settings,
        Writer(AssetResolver()),
        "runner-test",
        asyncio.Event(),
        progress_every_s=progress_every_s,
    )


@pytest.fixture
async def runner(clean_db: TestDatabase) -> AsyncIterator[SourceRunner]:
    engine, runner = await _runner(clean_db.admin_url, _settings(clean_db))
    yield runner
    await engine.dispose()


def _rows(db: TestDatabase, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        return list(conn.execute(sql).fetchall())


def _admin(db: TestDatabase, sql: str) -> None:
    # Writable even while the test has made the database read-only by default.
    options = "-c default_transaction_read_only=off"
    with psycopg.connect(db.admin_url, autocommit=True, options=options) as conn:
        conn.execute(sql)


def _cut_runner_connections(db: TestDatabase) -> None:
    _admin(
        db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{db.name}' AND application_name = '{APP}'",
    )


class ScriptedSource:
    """Batches that carry only a cursor; ``between`` runs after the first one is handed over."""

    source_type: ClassVar[SourceType] = "rss"

    def __init__(self, between: Callable[[], None] = lambda: None, count: int = 5) -> None:
        self._between = between
        self._count = count

    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        for n in range(self._count):
            yield Batch(cursor={"n": n}, processed=1)
            if n == 0:
                self._between()
                await asyncio.sleep(0.2)  # the read-ahead hands the first batch over meanwhile


class CutMidWrite(ScriptedSource):
    """The runner's connections are terminated while a batch is being written: its write
    waits for a lock on ``checkpoints`` inside its transaction when the cut comes."""

    def __init__(self, db: TestDatabase) -> None:
        super().__init__()
        self._db = db

    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        yield Batch(cursor={"n": 0}, processed=1)
        async with await psycopg.AsyncConnection.connect(self._db.admin_url) as holder:
            await holder.execute("LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE")
            yield Batch(cursor={"n": 1}, processed=1)  # read ahead: written meanwhile
            while not await _runner_waits_for_a_lock(self._db):
                await asyncio.sleep(0.05)
            await asyncio.to_thread(_cut_runner_connections, self._db)
        yield Batch(cursor={"n": 2}, processed=1)


async def _runner_waits_for_a_lock(db: TestDatabase) -> bool:
    async with await psycopg.AsyncConnection.connect(db.admin_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND wait_event_type = 'Lock'",
            (APP,),
        )
        row = await cursor.fetchone()
    return bool(row and row[0])


class BrokenFileSource(ScriptedSource):
    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        yield Batch(cursor={"n": 0}, processed=1)
        raise OSError(5, "Input/output error")


# --------------------------------------------------------------------------- progress lines


def _write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("timestamp,symbol,close\n")
        for i in range(rows):
            out.write(f"{1_600_000_000 + 3600 * i},BTC,{100 + i % 50}.5\n")


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The fields of each ``event`` line, its message under ``message``."""
    return [
        {**r.__dict__, "message": r.getMessage()}
        for r in caplog.records
        if getattr(r, "event", None) == event
    ]


async def test_a_csv_load_says_when_each_file_starts_how_far_it_is_and_when_it_ends(
    clean_db: TestDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name, count in (("a.csv", 10_000), ("b.csv", 2_500)):
        _write_csv(tmp_path / name, count)
    settings = _settings(clean_db, CSV_PATHS=str(tmp_path), CSV_COLUMN_MAP="*:quote=USD")
    engine, runner = await _runner(clean_db.admin_url, settings, progress_every_s=0)
    caplog.set_level(logging.INFO, logger="cryptoetl.worker")
    try:
        outcome = await runner.run(CsvSource(settings))
        assert outcome.status == "success", outcome.error
        started = _events(caplog, "file_started")
        assert [(r["file"], r["bytes_total"]) for r in started] == [
            (str(tmp_path / n), (tmp_path / n).stat().st_size) for n in ("a.csv", "b.csv")
        ]
        progress = [r for r in _events(caplog, "file_progress") if r["file"].endswith("a.csv")]
        # A line per committed batch (the interval is 0), until the file's end is read.
        rows = [r["rows"] for r in progress]
        assert rows[:9] == [1000 * n for n in range(1, 10)], rows
        assert rows[-1] <= 10_000
        size = (tmp_path / "a.csv").stat().st_size
        percents = [r["percent"] for r in progress]
        assert percents == sorted(percents)
        assert 0 < percents[0] <= percents[-1] <= 100
        assert all(0 < r["bytes_read"] <= size and r["bytes_total"] == size for r in progress)
        assert progress[0]["eta_s"] is None  # one batch in: no rate yet
        assert all(r["eta_s"] >= 0 and r["rows_per_s"] > 0 for r in progress[1:])
        assert progress[1]["message"].startswith("a.csv: 20.")
        assert "rows/s, ETA " in progress[1]["message"]
        finished = _events(caplog, "file_finished")
        assert [(Path(r["file"]).name, r["rows"], r["error"]) for r in finished] == [
            ("a.csv", 10_000, None),
            ("b.csv", 2_500, None),
        ]

        # Unchanged files are not read again: no file lines at all.
        caplog.clear()
        again = await runner.run(CsvSource(settings))
        assert again.status == "success"
        assert not [r for r in caplog.records if str(getattr(r, "event", "")).startswith("file_")]
    finally:
        await engine.dispose()


async def test_progress_lines_come_at_most_every_interval(
    clean_db: TestDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_csv(tmp_path / "a.csv", 10_000)
    settings = _settings(clean_db, CSV_PATHS=str(tmp_path), CSV_COLUMN_MAP="*:quote=USD")
    engine, runner = await _runner(clean_db.admin_url, settings, progress_every_s=3600)
    caplog.set_level(logging.INFO, logger="cryptoetl.worker")
    try:
        assert (await runner.run(CsvSource(settings))).status == "success"
    finally:
        await engine.dispose()
    assert _events(caplog, "file_progress") == []
    assert len(_events(caplog, "file_started")) == len(_events(caplog, "file_finished")) == 1


# --------------------------------------------------------------------------- runs the database cuts


async def test_a_terminated_backend_is_the_recorded_cause(
    clean_db: TestDatabase, runner: SourceRunner
) -> None:
    outcome = await asyncio.wait_for(runner.run(CutMidWrite(clean_db)), 60)
    assert outcome.status == "failed"
    [(status, error)] = _rows(clean_db, "SELECT status, error FROM runs")
    assert status == "failed"
    assert error == outcome.error
    assert error.startswith(
        ("the connection to the database was lost", "the database ended the connection")
    ), error
    assert "rollback" not in error.lower()
    assert "\n" not in error


async def test_a_run_cut_by_a_switch_to_read_only_is_closed_with_its_cause_later(
    clean_db: TestDatabase, runner: SourceRunner
) -> None:
    def switch_to_read_only() -> None:
        _admin(clean_db, f'ALTER DATABASE "{clean_db.name}" SET default_transaction_read_only = on')
        _cut_runner_connections(clean_db)  # reconnected sessions are read-only

    try:
        cut = await runner.run(ScriptedSource(switch_to_read_only))
        assert cut.status == "failed"
        # Its end could not be written: kept, and the row is still open.
        assert [o.run_id for o in runner.unrecorded] == [cut.run_id]
        assert _rows(clean_db, "SELECT status FROM runs") == [("running",)]
        not_started = await runner.run(ScriptedSource())
        assert not_started.status == "not_started"
        assert "read-only" in str(not_started.error)
    finally:
        _admin(clean_db, f'ALTER DATABASE "{clean_db.name}" RESET default_transaction_read_only')

    # Writable again: the next run of the source writes the cut run's end first.
    after = await runner.run(ScriptedSource())
    assert after.status == "success"
    assert runner.unrecorded == []
    [(status, error, finished_at)] = _rows(
        clean_db, f"SELECT status, error, finished_at FROM runs WHERE id = '{cut.run_id}'"
    )
    assert (status, error) == ("failed", cut.error)
    assert "closed at the next start" not in error
    assert finished_at == cut.ended_at  # when it ended, not when it was written


async def test_a_source_that_cannot_read_its_file_is_not_a_database_problem(
    clean_db: TestDatabase, runner: SourceRunner
) -> None:
    outcome = await runner.run(BrokenFileSource())
    assert outcome.status == "failed"
    assert outcome.error == "OSError: [Errno 5] Input/output error"
    assert _rows(clean_db, "SELECT status, error FROM runs") == [("failed", outcome.error)]


async def test_a_run_the_database_does_not_let_start_is_not_started(
    clean_db: TestDatabase,
) -> None:
    gone = via(clean_db.admin_url, free_port())  # nothing listens there
    engine, runner = await _runner(gone, _settings(clean_db))
    try:
        outcome = await runner.run(ScriptedSource())
    finally:
        await engine.dispose()
    assert outcome.status == "not_started"
    assert outcome.run_id is None
    assert outcome.error is not None
    assert outcome.error.startswith("cannot reach the database")
