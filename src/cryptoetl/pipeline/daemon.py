"""The worker daemon: every enabled source at start, concurrently, then each on its interval.

* ``run_once`` is the manual trigger (``cryptoetl worker --once``); so is SIGUSR1 to a running
  daemon, which starts a pass of every source that is not already running.
* SIGTERM/SIGINT: stop taking work, let the current batch commit (or roll back), close runs as
  ``interrupted`` and exit within 10 s.
* A heartbeat row per worker process backs ``cryptoetl worker --check`` (container liveness).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.config import Settings
from cryptoetl.db.engine import make_engine
from cryptoetl.db.tables import worker_heartbeats
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.runner import RunOutcome, SourceRunner
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources import build_sources
from cryptoetl.sources.base import Source, SourceType
from cryptoetl.sources.http import HttpClient

log = logging.getLogger("cryptoetl.worker")

HEARTBEAT_EVERY_S = 15.0
SHUTDOWN_GRACE_S = 8.0  # then cancel: the whole stop fits in the 10 s a container gets
DB_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.worker_id = worker_id()
        self._triggers: dict[SourceType, asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def _resources(
        self,
    ) -> AsyncIterator[tuple[AsyncEngine, dict[SourceType, Source], SourceRunner]]:
        engine = make_engine(
            self.settings.require_database_url(), pool_size=6, application_name="cryptoetl-worker"
        )
        try:
            async with HttpClient(self.settings) as http:
                resolver = AssetResolver()
                await self._prepare(engine, resolver)
                writer = Writer(resolver)
                runner = SourceRunner(engine, self.settings, writer, self.worker_id, self.stop)
                yield engine, build_sources(self.settings, http), runner
        finally:
            await engine.dispose()

    async def _prepare(self, engine: AsyncEngine, resolver: AssetResolver) -> None:
        """Seed assets; wait (with backoff) for a database that is still starting."""
        for delay in (*DB_RETRY_S, None):
            try:
                async with engine.begin() as conn:
                    await resolver.ensure_seed(conn)
                return
            except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                if delay is None or self.stop.is_set():
                    raise
                log.warning(
                    "database not reachable, retrying",
                    extra={
                        "event": "db_unavailable",
                        "retry_in_s": delay,
                        "error": type(exc).__name__,
                    },
                )
                await self._sleep(delay)

    async def run_once(self, only: Sequence[str] = ()) -> bool:
        """One pass over the selected sources, concurrently; True when every one succeeded."""
        async with self._resources() as (engine, sources, runner):
            selected = [s for name, s in sources.items() if not only or name in only]
            heartbeat = asyncio.create_task(self._heartbeat(engine))
            try:
                outcomes = await asyncio.gather(*(runner.run(s) for s in selected))
            finally:
                heartbeat.cancel()
        return all(o.status in ("success", "skipped") for o in outcomes) and bool(outcomes)

    async def run_forever(self) -> None:
        async with self._resources() as (engine, sources, runner):
            self._triggers = {name: asyncio.Event() for name in sources}
            tasks = [
                asyncio.create_task(self._loop(runner, s), name=f"source:{n}")
                for n, s in sources.items()
            ]
            tasks.append(asyncio.create_task(self._heartbeat(engine), name="heartbeat"))
            await self.stop.wait()
            log.info("stopping: finishing current batches", extra={"event": "worker_stopping"})
            _, pending = await asyncio.wait(tasks[:-1], timeout=SHUTDOWN_GRACE_S)
            for task in [*pending, tasks[-1]]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._forget_heartbeat(engine)
        log.info("worker stopped", extra={"event": "worker_stopped"})

    async def _loop(self, runner: SourceRunner, source: Source) -> None:
        name = source.source_type
        trigger = self._triggers[name]
        unreachable = 0
        while not self.stop.is_set():
            trigger.clear()
            try:
                outcome: RunOutcome = await runner.run(source)
            except (OSError, sa.exc.SQLAlchemyError) as exc:
                # The database is down before the run could even be recorded: back off and try
                # again, so the daemon recovers by itself when the database is back.
                delay = DB_RETRY_S[min(unreachable, len(DB_RETRY_S) - 1)]
                unreachable += 1
                log.warning(
                    "run could not start: database unreachable",
                    extra={
                        "event": "run_not_started",
                        "source": name,
                        "retry_in_s": delay,
                        "error": type(exc).__name__,
                    },
                )
                await self._wait_any(trigger, delay)
                continue
            unreachable = 0
            if self.stop.is_set():
                return
            interval = self.settings.interval_for(name)
            log.info(
                "next run scheduled",
                extra={
                    "event": "run_scheduled",
                    "source": name,
                    "in_s": interval,
                    "last_status": outcome.status,
                },
            )
            await self._wait_any(trigger, interval)

    async def _wait_any(self, trigger: asyncio.Event, timeout: float) -> None:
        waiters = [asyncio.ensure_future(trigger.wait()), asyncio.ensure_future(self.stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    def trigger_all(self) -> None:
        log.info("manual trigger: running every source now", extra={"event": "manual_trigger"})
        for event in self._triggers.values():
            event.set()

    async def _heartbeat(self, engine: AsyncEngine) -> None:
        while True:
            stmt = insert(worker_heartbeats).values(worker_id=self.worker_id)
            stmt = stmt.on_conflict_do_update(
                index_elements=["worker_id"], set_={"heartbeat_at": sa.func.now()}
            )
            try:
                async with engine.begin() as conn:
                    await conn.execute(stmt)
            except (OSError, sa.exc.SQLAlchemyError) as exc:
                log.warning(
                    "heartbeat not written",
                    extra={"event": "heartbeat_failed", "error": type(exc).__name__},
                )
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def _forget_heartbeat(self, engine: AsyncEngine) -> None:
        with contextlib.suppress(Exception):
            async with engine.begin() as conn:
                await conn.execute(
                    worker_heartbeats.delete().where(
                        worker_heartbeats.c.worker_id == self.worker_id
                    )
                )

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGUSR1, self.trigger_all)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("signal received", extra={"event": "signal", "signal": sig.name})
        self.stop.set()


async def check_liveness(settings: Settings, max_age: timedelta = timedelta(seconds=60)) -> bool:
    """True when a worker on this host wrote a heartbeat within ``max_age``."""
    engine = make_engine(
        settings.require_database_url(), pool_size=1, application_name="cryptoetl-check"
    )
    try:
        async with engine.connect() as conn:
            fresh = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(worker_heartbeats)
                .where(
                    worker_heartbeats.c.worker_id.like(f"{socket.gethostname()}:%"),
                    worker_heartbeats.c.heartbeat_at > sa.func.now() - max_age,
                )
            )
        return bool(fresh)
    finally:
        await engine.dispose()
