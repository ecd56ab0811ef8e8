"""The worker daemon: every enabled source at start, concurrently, then each on its interval.

* ``run_once`` is the manual trigger (``cryptoetl worker --once``); so is SIGUSR1 to a running
  daemon, which starts a pass of every source that is not already running.
* SIGTERM/SIGINT: stop taking work, let the current batch commit (or roll back), close runs as
  ``interrupted`` and exit within 10 s.
* A heartbeat row per worker process backs ``cryptoetl worker --check`` (container liveness).
* The database at start (reachable, at the schema this code needs, seeded): ``run_once`` waits
  ``DB_WAIT_S`` for transient problems and gives up at once on the others; the daemon waits for
  every problem, with backoff, and says each time what is wrong (see :mod:`cryptoetl.db.errors`).
  A run the database does not even let start comes back ``not_started``: the daemon retries it
  with the same backoff.
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
from cryptoetl.db.errors import DatabaseTrouble, classify, database_troubles
from cryptoetl.db.tables import worker_heartbeats
from cryptoetl.db.wait import Patience, WaitStopped, patiently
from cryptoetl.migrate import schema_problem
from cryptoetl.pipeline.assets import AssetResolver
from cryptoetl.pipeline.runner import SourceRunner
from cryptoetl.pipeline.runs import RunOutcome
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources import open_sources
from cryptoetl.sources.base import Source, SourceType

log = logging.getLogger("cryptoetl.worker")

HEARTBEAT_EVERY_S = 15.0
SHUTDOWN_GRACE_S = 8.0  # then cancel: the whole stop fits in the 10 s a container gets
FINAL_WRITES_S = 1.0  # after the grace: the ends of cut runs, the heartbeat's removal
DB_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# Once stopping, the ends of runs the database cut get one short try: the exit comes first.
_STOPPING = Patience((0.1,), bound_s=FINAL_WRITES_S / 2, bound_setting="the stop's time budget")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.worker_id = worker_id()
        self._triggers: dict[SourceType, asyncio.Event] = {}

    def _patience(self, *, bounded: bool) -> Patience:
        """``--once``: ``DB_WAIT_S`` for transient problems; the daemon: every problem, for good."""
        if bounded:
            return Patience(DB_RETRY_S, bound_s=self.settings.db_wait_s, bound_setting="DB_WAIT_S")
        return Patience(DB_RETRY_S, every_kind=True)

    @contextlib.asynccontextmanager
    async def _resources(
        self, patience: Patience
    ) -> AsyncIterator[tuple[AsyncEngine, dict[SourceType, Source], SourceRunner]]:
        engine = make_engine(
            self.settings.require_database_url(), pool_size=6, application_name="cryptoetl-worker"
        )
        try:
            async with open_sources(self.settings) as sources:
                resolver = AssetResolver()
                await patiently(lambda: self._prepare(engine, resolver), patience, stop=self.stop)
                writer = Writer(resolver)
                runner = SourceRunner(engine, self.settings, writer, self.worker_id, self.stop)
                yield engine, sources, runner
        finally:
            await engine.dispose()

    async def _prepare(self, engine: AsyncEngine, resolver: AssetResolver) -> None:
        """Check that the schema is this code's, and seed the assets."""
        async with engine.begin() as conn:
            revisions = await conn.scalars(sa.text("SELECT version_num FROM alembic_version"))
            problem = schema_problem(set(revisions))
            if problem is not None:
                raise DatabaseTrouble(problem)
            await resolver.ensure_seed(conn)

    async def run_once(self, only: Sequence[str] = ()) -> bool:
        """One pass over the selected sources, concurrently; True when every one succeeded.

        Raises :class:`DatabaseTrouble` when the database is not ready within ``DB_WAIT_S``
        (or has a problem not worth waiting for).
        """
        patience = self._patience(bounded=True)
        try:
            async with self._resources(patience) as (engine, sources, runner):
                selected = [s for name, s in sources.items() if not only or name in only]
                heartbeat = asyncio.create_task(self._heartbeat(engine))
                try:
                    outcomes = await asyncio.gather(*(runner.run(s) for s in selected))
                    await self._record_unrecorded(
                        runner, _STOPPING if self.stop.is_set() else patience
                    )
                finally:
                    heartbeat.cancel()
        except WaitStopped:
            log.info("stopped before the database was ready", extra={"event": "worker_stopped"})
            return False
        return all(o.status in ("success", "skipped") for o in outcomes) and bool(outcomes)

    async def run_forever(self) -> None:
        try:
            async with self._resources(self._patience(bounded=False)) as (engine, sources, runner):
                await self._serve(engine, sources, runner)
        except WaitStopped:
            pass  # stopped while waiting for the database: nothing ran, nothing to close
        log.info("worker stopped", extra={"event": "worker_stopped"})

    async def _serve(
        self, engine: AsyncEngine, sources: dict[SourceType, Source], runner: SourceRunner
    ) -> None:
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
        await self._record_unrecorded(runner, _STOPPING)
        await self._forget_heartbeat(engine)

    async def _record_unrecorded(self, runner: SourceRunner, patience: Patience) -> None:
        """Before exiting: write the ends of runs the database cut, if it lets us in time."""
        if not runner.unrecorded:
            return
        try:
            await patiently(runner.record_unrecorded, patience)
        except DatabaseTrouble as exc:
            log.error(
                "the end of a run the database cut could not be recorded: %s; the next start "
                "closes it",
                exc.problem.line(),
                extra={"event": "run_end_unrecorded", "error": exc.problem.line()},
            )

    async def _loop(self, runner: SourceRunner, source: Source) -> None:
        name = source.source_type
        trigger = self._triggers[name]
        not_started = 0
        while not self.stop.is_set():
            trigger.clear()
            try:
                outcome: RunOutcome = await runner.run(source)
            except Exception as exc:
                # A bug (database problems come back as outcomes): said with its traceback, and
                # the source keeps its schedule instead of stopping for good.
                log.exception("run crashed", extra={"event": "run_error", "source": name})
                outcome = RunOutcome(name, "failed", error=type(exc).__name__)
            if self.stop.is_set():
                return
            if outcome.status == "not_started":
                # The database would not even record the run: back off, then try again.
                delay: float = DB_RETRY_S[min(not_started, len(DB_RETRY_S) - 1)]
                not_started += 1
            else:
                delay, not_started = self.settings.interval_for(name), 0
            log.info(
                "next run scheduled",
                extra={
                    "event": "run_scheduled",
                    "source": name,
                    "in_s": delay,
                    "last_status": outcome.status,
                },
            )
            await self._wait_any(trigger, delay)

    async def _wait_any(self, trigger: asyncio.Event, timeout: float) -> None:
        waiters = [asyncio.ensure_future(trigger.wait()), asyncio.ensure_future(self.stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

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
            except Exception as exc:
                problem = classify(exc)
                if problem is None:  # a bug: said, and the heartbeat keeps trying
                    log.exception("heartbeat not written", extra={"event": "heartbeat_failed"})
                else:
                    log.warning(
                        "heartbeat not written",
                        extra={"event": "heartbeat_failed", "error": problem.line()},
                    )
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def _forget_heartbeat(self, engine: AsyncEngine) -> None:
        # Bounded: a database that black-holes packets must not hold the exit past 10 s.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(FINAL_WRITES_S / 2), engine.begin() as conn:
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
    """True when a worker on this host wrote a heartbeat within ``max_age``; a database problem
    is :class:`DatabaseTrouble` (one line from the command)."""
    engine = make_engine(
        settings.require_database_url(), pool_size=1, application_name="cryptoetl-check"
    )
    try:
        with database_troubles():
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
