"""One source run: lock → checkpoint → fetch → raw → normalize → upsert → record.

* A PostgreSQL advisory lock per source means several worker replicas never ingest the same
  source at once; the replica that does not get the lock skips and says so.
* Holding the lock also proves no live run of that source exists, so runs left ``running`` by a
  dead worker are closed as ``interrupted`` right then.
* Each batch and the checkpoint it advances are committed in one transaction.
* A run the database cuts ends with the database's own account of why
  (:func:`cryptoetl.db.errors.classify`). When even its end cannot be written (the database is
  gone, or read-only), the runner keeps it and writes it before the next run of that source
  (:meth:`SourceRunner.record_unrecorded` for a last try before ``--once`` exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.config import Settings
from cryptoetl.db.errors import classify
from cryptoetl.pipeline.checkpoints import read_cursor, record_outcome
from cryptoetl.pipeline.fetch import SourceFailed, read_ahead, tune_interpreter_for_bulk_loads
from cryptoetl.pipeline.progress import PROGRESS_EVERY_S, LoadProgress
from cryptoetl.pipeline.runs import BatchCounts, RunOutcome, close_run, open_run, source_lock
from cryptoetl.pipeline.store import Writer
from cryptoetl.sources.base import Batch, Source, SourceError, SourceType

log = logging.getLogger("cryptoetl.worker")


class RunInterrupted(Exception):
    """The worker was asked to stop; the current batch was committed or rolled back."""


class InjectedFailure(SourceError):
    """ETL_FAIL_AFTER: a deliberate failure for demos and resume tests."""


class SourceRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        writer: Writer,
        worker_id: str,
        stop: asyncio.Event,
        *,
        progress_every_s: float = PROGRESS_EVERY_S,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._writer = writer
        self._worker_id = worker_id
        self._stop = stop
        self._redact = settings.redactor()
        self._progress_every_s = progress_every_s
        # Ends of runs the database did not let us write, by source: written before its next run.
        self._unrecorded: dict[SourceType, RunOutcome] = {}
        tune_interpreter_for_bulk_loads()

    @property
    def unrecorded(self) -> list[RunOutcome]:
        return list(self._unrecorded.values())

    async def run(self, source: Source) -> RunOutcome:
        """One run of ``source``; ``not_started`` (logged, nothing read) when the database
        cannot even record it. Only a bug raises."""
        try:
            async with self._renewing_connections():
                return await self._run_with_lock(source)
        except Exception as exc:
            problem = classify(exc)
            if problem is None:
                raise
            error = self._cut(problem.line())
            log.warning(
                "run could not start: the database did not let it",
                extra={"event": "run_not_started", "source": source.source_type, "error": error},
            )
            return RunOutcome(source.source_type, "not_started", error=error)

    @contextlib.asynccontextmanager
    async def _renewing_connections(self) -> AsyncIterator[None]:
        """An outage found inside drops every pooled connection: they most likely share its
        fate, and one that survived a failover on a now read-only server would fail every
        write without ever being closed for it."""
        try:
            yield
        except Exception as exc:
            problem = classify(exc)
            if problem is not None and problem.kind == "unavailable":
                await self._engine.dispose()
            raise

    async def _run_with_lock(self, source: Source) -> RunOutcome:
        name = source.source_type
        async with source_lock(self._engine, name) as got:
            if not got:
                log.info(
                    "source locked by another worker, skipped",
                    extra={"event": "run_skipped", "source": name},
                )
                return RunOutcome(name, "skipped")
            return await self._run_locked(source)

    async def _run_locked(self, source: Source) -> RunOutcome:
        name = source.source_type
        run_id = uuid.uuid4()
        cursor = await self._begin(name, run_id)
        self._writer.assets.start_run(self._settings.max_new_assets_per_run)
        outcome = RunOutcome(name, "success", run_id)
        started = time.monotonic()
        log.info(
            "run started", extra={"event": "run_started", "source": name, "run_id": str(run_id)}
        )
        try:
            await self._consume(source, cursor, run_id, outcome)
        except asyncio.CancelledError:
            outcome.status, outcome.error = "interrupted", "worker stopped (cancelled)"
            await asyncio.shield(self._finish(outcome, started))
            raise
        except RunInterrupted as exc:
            outcome.status, outcome.error = "interrupted", str(exc)
        except SourceFailed as exc:
            # The source's own error, whatever it is (an OSError here is a file's, not the
            # database's): never classified as a database problem.
            outcome.status, outcome.error = "failed", self._cut(_text(exc.error))
            if not isinstance(exc.error, SourceError):
                self._log_bug(outcome)
        except Exception as exc:
            self._writer.forget()
            outcome.status, outcome.error = "failed", self._describe(exc)
            if not isinstance(exc, SourceError) and classify(exc) is None:
                self._log_bug(outcome)
        await self._finish(outcome, started)
        return outcome

    def _log_bug(self, outcome: RunOutcome) -> None:
        """Expected failures are reported by _finish; only a bug earns a traceback."""
        log.exception(
            "run crashed",
            extra={"event": "run_error", "source": outcome.source, "run_id": str(outcome.run_id)},
        )

    async def _consume(
        self, source: Source, cursor: dict[str, Any], run_id: uuid.UUID, outcome: RunOutcome
    ) -> None:
        fail_after = self._settings.etl_fail_after
        limit = fail_after[1] if fail_after and fail_after[0] == source.source_type else None
        progress = LoadProgress(
            {"source": source.source_type, "run_id": str(run_id)},
            cursor,
            every_s=self._progress_every_s,
        )
        batches = source.batches(cursor, self._settings.batch_size)
        # One connection for the run's batches, each in its own transaction: no pool checkout
        # and liveness ping per batch.
        async with (
            read_ahead(batches) as prefetched,
            self._renewing_connections(),
            self._engine.connect() as conn,
        ):
            async for batch in self._until_stopped(prefetched):
                if self._stop.is_set():
                    raise RunInterrupted("worker stopping: run interrupted between batches")
                async with conn.begin():
                    counts, drift = await self._writer.write_batch(
                        conn, source.source_type, run_id, batch
                    )
                outcome.counts.add(counts)
                self._log_batch(source.source_type, outcome, counts, drift, batch.warnings)
                progress.committed(batch)
                if limit is not None and outcome.counts.processed >= limit:
                    done = outcome.counts.processed
                    raise InjectedFailure(f"injected failure after {done} records (ETL_FAIL_AFTER)")

    async def _until_stopped(self, batches: AsyncIterator[Batch]) -> AsyncIterator[Batch]:
        """``batches`` until the worker is asked to stop. Waiting for the next one ends at
        once then: no batch is being written, and a source may take long (an upstream's
        retries) or never answer (a read stuck on a hung network filesystem)."""
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                upcoming = asyncio.ensure_future(anext(batches))
                await asyncio.wait({upcoming, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not upcoming.done():
                    upcoming.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await upcoming
                    raise RunInterrupted(
                        "worker stopping: run interrupted while waiting for its source"
                    )
                try:
                    batch = upcoming.result()
                except StopAsyncIteration:
                    return
                yield batch
        finally:
            stopping.cancel()

    def _log_batch(
        self,
        name: str,
        outcome: RunOutcome,
        counts: BatchCounts,
        drift: list[Any],
        warnings: list[str],
    ) -> None:
        extra = {"source": name, "run_id": str(outcome.run_id)}
        for event in drift:
            log.warning(
                "schema drift",
                extra={
                    **extra,
                    "event": "schema_drift",
                    "field": event.field,
                    "change": event.change,
                    "candidate": event.candidate_field,
                    "similarity": event.similarity,
                },
            )
        for warning in warnings:
            log.warning(warning, extra={**extra, "event": "source_warning"})
        log.info(
            "batch committed",
            extra={
                **extra,
                "event": "batch_committed",
                "batch": counts.as_dict(),
                "counts": outcome.counts.as_dict(),
            },
        )

    async def _begin(self, name: SourceType, run_id: uuid.UUID) -> dict[str, Any]:
        """Close this source's earlier runs, open this one, and read the checkpoint cursor."""
        async with self._engine.begin() as conn:
            late = self._unrecorded.get(name)
            if late is not None:
                await self._record_end(conn, late)
            await open_run(conn, name, run_id, self._worker_id)
            cursor = await read_cursor(conn, name)
        if late is not None:
            self._recorded_late(late)
        return cursor

    async def record_unrecorded(self) -> None:
        """Write the ends of runs the database cut; raises what the database raises."""
        for outcome in self.unrecorded:
            async with self._renewing_connections(), self._engine.begin() as conn:
                await self._record_end(conn, outcome)
            self._recorded_late(outcome)

    def _recorded_late(self, outcome: RunOutcome) -> None:
        del self._unrecorded[outcome.source]
        log.info(
            "recorded the end of a run the database had cut",
            extra={
                "event": "run_end_recorded",
                "source": outcome.source,
                "run_id": str(outcome.run_id),
                "status": outcome.status,
            },
        )

    async def _finish(self, outcome: RunOutcome, started: float) -> None:
        outcome.ended_at = datetime.now(UTC)
        extra = {
            "event": f"run_{outcome.status}",
            "source": outcome.source,
            "run_id": str(outcome.run_id),
            "counts": outcome.counts.as_dict(),
            "duration_s": round(time.monotonic() - started, 3),
        }
        try:
            async with self._renewing_connections(), self._engine.begin() as conn:
                await self._record_end(conn, outcome)
        except Exception as exc:
            error = self._describe(exc)
            if classify(exc) is None:  # a bug: trying again would fail again
                log.exception("could not record the end of a run", extra={**extra, "error": error})
            else:
                # Kept: written before the next run of this source (or before --once exits).
                self._unrecorded[outcome.source] = outcome
                log.error(
                    "could not record the end of a run; kept until the database takes it",
                    extra={**extra, "event": "run_end_unrecorded", "error": error},
                )
        if outcome.status == "success":
            log.info("run finished", extra=extra)
        else:
            log.warning("run ended: %s", outcome.error, extra={**extra, "error": outcome.error})

    async def _record_end(self, conn: Any, outcome: RunOutcome) -> None:
        await close_run(conn, outcome)
        await record_outcome(conn, outcome)

    def _describe(self, exc: BaseException) -> str:
        """The error of a run as stored and logged: the database's account of it when it is a
        database problem, else the exception's text."""
        problem = classify(exc)
        return self._cut(problem.line() if problem is not None else _text(exc))

    def _cut(self, text: str) -> str:
        """Redacted, then cut (the one rule)."""
        return self._redact.truncate(text, 2000)


def _text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
