"""Waiting for the database: the one retry loop of the commands (bounded) and the daemon (patient).

:func:`patiently` runs an attempt until it succeeds. A failure that :func:`~cryptoetl.db.errors.
classify` does not recognise is not the database's doing and goes up at once; a database
problem is waited for when the :class:`Patience` allows it (every transient one; every one for
the daemon), else raised as :class:`~cryptoetl.db.errors.DatabaseTrouble`. A bounded patience
also bounds each attempt, so a database that black-holes packets cannot hold the caller past
its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptoetl.db.errors import DatabaseProblem, DatabaseTrouble, classify, wait_ran_out

log = logging.getLogger("cryptoetl.db")

T = TypeVar("T")
# Even at the very end of a bound, an attempt gets this long (one connect on loopback).
MIN_ATTEMPT_S = 0.1


@dataclass(frozen=True)
class Patience:
    """How long to wait for the database, and for which problems."""

    delays_s: tuple[float, ...]  # between attempts; the last one repeats
    bound_s: float | None = None  # give up after this long; None: never
    bound_setting: str = ""  # what sets the bound, named when it runs out
    every_kind: bool = False  # also wait for refusals and the schema (see db.errors)
    url_variable: str = "DATABASE_URL"

    def waits_for(self, problem: DatabaseProblem) -> bool:
        return problem.transient or self.every_kind

    def delay(self, attempt: int) -> float:
        return self.delays_s[min(attempt, len(self.delays_s)) - 1]


class WaitStopped(Exception):
    """The caller's stop event was set while it waited for the database."""


async def patiently(
    attempt: Callable[[], Awaitable[T]],
    patience: Patience,
    *,
    stop: asyncio.Event | None = None,
) -> T:
    """``attempt()``'s result once it succeeds.

    Raises :class:`DatabaseTrouble` when patience ends (the bound ran out, or a problem not
    worth waiting for), :class:`WaitStopped` as soon as ``stop`` is set (an attempt under way
    is cancelled: a stop never waits for a connect timeout).
    """
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        left = None if patience.bound_s is None else patience.bound_s - (time.monotonic() - started)
        try:
            result = await _attempt(attempt, left, stop)
        except WaitStopped:
            raise
        except Exception as exc:
            problem = classify(exc, patience.url_variable)
            if problem is None:
                raise
            if not patience.waits_for(problem):
                raise DatabaseTrouble(problem) from None
            pause = patience.delay(attempts)
            if patience.bound_s is not None:
                left = patience.bound_s - (time.monotonic() - started)
                if left <= 0:
                    late = wait_ran_out(problem, patience.bound_s, patience.bound_setting)
                    raise DatabaseTrouble(late) from None
                pause = min(pause, left)
            _log_wait(problem, attempts, pause)
            await _pause(pause, stop)
            continue
        if attempts > 1:
            log.info("database ready", extra={"event": "database_ready", "attempts": attempts})
        return result


async def _attempt(
    attempt: Callable[[], Awaitable[T]], left: float | None, stop: asyncio.Event | None
) -> T:
    """One attempt, within ``left`` seconds (None: its own timeouts), abandoned on ``stop``."""
    async with asyncio.timeout(None if left is None else max(left, MIN_ATTEMPT_S)):
        if stop is None:
            return await attempt()
        if stop.is_set():
            raise WaitStopped
        work = asyncio.ensure_future(attempt())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():
            raise WaitStopped
        return work.result()


def _log_wait(problem: DatabaseProblem, attempt: int, pause: float) -> None:
    # A transient problem passes by itself; any other needs someone: it is an error meanwhile.
    level = logging.WARNING if problem.transient else logging.ERROR
    log.log(
        level,
        "database not ready, retrying in %g s",
        round(pause, 2),
        extra={
            "event": "database_wait",
            "kind": problem.kind,
            "attempt": attempt,
            "error": problem.line(),
            "retry_in_s": round(pause, 2),
        },
    )


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
