"""The API process's ``LISTEN`` connection: notifications of committed writes invalidate the
response cache (:mod:`cryptoetl.api.cache`).

One dedicated connection per process (not from the pool: ``LISTEN`` belongs to a session). The
cache is live only while it is connected and proven alive: a keep-alive query every
:data:`KEEPALIVE_S` seconds must answer within :data:`KEEPALIVE_TIMEOUT_S`, so a connection
lost without a word (a network partition) stops the caching as surely as a closed one. After
any loss the cache is emptied and stays off until the connection is back, with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from cryptoetl.api.cache import TaggedCache
from cryptoetl.api.errors import database_problem
from cryptoetl.config import DatabaseUrl
from cryptoetl.db.notify import DATA_CHANGED

log = logging.getLogger("cryptoetl.api")

KEEPALIVE_S = 5.0
KEEPALIVE_TIMEOUT_S = 2.0
RETRY_S = (0.5, 1.0, 2.0, 5.0)


class ChangeListener:
    def __init__(self, url: DatabaseUrl, caches: Sequence[TaggedCache[Any]]) -> None:
        self._url = url
        self._caches = tuple(caches)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="change-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._reset(live=False)

    def _reset(self, *, live: bool) -> None:
        for cache in self._caches:
            cache.reset(live=live)

    @property
    def live(self) -> bool:
        return all(cache.live for cache in self._caches)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for cache in self._caches:
            cache.invalidate(payload)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except Exception as exc:
                if self.live or failures == 0:  # once per loss
                    _say_lost(exc)
                failures += 1
            finally:
                self._reset(live=False)
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._url.reveal(),
            timeout=KEEPALIVE_TIMEOUT_S * 2,
            server_settings={"application_name": "cryptoetl-api-listener"},
        )
        try:
            await conn.add_listener(DATA_CHANGED, self._notified)
            # Anything may have changed before LISTEN took effect: start empty.
            self._reset(live=True)
            while True:
                await asyncio.sleep(KEEPALIVE_S)
                await conn.fetchval("SELECT 1", timeout=KEEPALIVE_TIMEOUT_S)
        finally:
            conn.terminate()


def _say_lost(exc: Exception) -> None:
    problem = database_problem(exc)
    if problem is None:  # a bug: said in full; the cache stays off and the listener retries
        log.exception("change listener failed", extra={"event": "cache_off"})
        return
    log.warning(
        "change notifications lost; response cache off until they are back",
        extra={"event": "cache_off", "error": problem.line()},
    )
