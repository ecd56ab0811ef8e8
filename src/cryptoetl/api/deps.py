"""The API's database access: one read-only engine per process, lent to handlers by DI.

Read-only twice over: the engine logs in with the reader role from ``API_DATABASE_URL`` (SELECT
grants only) *and* every session starts with ``default_transaction_read_only = on`` (set by
:func:`cryptoetl.db.engine.make_engine`), so even a mis-granted role cannot write through us.

Connections are *leased*: :class:`Database` checks connections out of the engine's pool and
keeps them between requests. Why: every engine checkout runs ``pool_pre_ping``, which with
asyncpg costs three round trips (BEGIN, ping, ROLLBACK) before the one query a request needs,
and on a loopback server round trips are most of the per-request cost. The engine still owns
the connection lifecycle: a lease idle longer than :data:`REVALIDATE_AFTER_IDLE_S` or older
than :data:`MAX_LEASE_AGE_S` goes back to the pool and a fresh checkout (pre-pinged, recycled)
replaces it.

Failures: a failure to connect, or a connection dying under a query, becomes
:class:`~cryptoetl.api.errors.DatabaseUnavailable` (503). The broken connection is invalidated
and the other idle leases are dropped too (they most likely share its fate), so the next
request checks out a fresh connection: that is how the API recovers by itself once the
database is back.

Handlers run SQL on the asyncpg connection underneath (statements are prepared once per
connection and cached by asyncpg; rows skip SQLAlchemy's per-row processing). Statements run
in autocommit: each is its own read-only transaction, and no BEGIN/COMMIT round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptoetl.api.errors import DatabaseUnavailable, is_connection_error
from cryptoetl.config import DatabaseUrl
from cryptoetl.db.engine import make_engine

# Enough connections for one Granian worker to keep a 2-core PostgreSQL busy; more would only
# queue inside the server. Requests beyond this wait for a lease, not for a new connection.
POOL_SIZE = 8
# Bounds the wait for a connection (connect or lease); /health uses the same bound so it
# answers quickly when the server is unreachable (a black-holed host would otherwise wait for
# the engine's 10 s connect timeout).
ACQUIRE_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 2.0
REVALIDATE_AFTER_IDLE_S = 5.0
MAX_LEASE_AGE_S = 600.0


class _Lease:
    __slots__ = ("conn", "driver", "leased_at", "released_at")

    def __init__(self, conn: AsyncConnection, driver: Any) -> None:
        self.conn = conn
        self.driver = driver  # the asyncpg.Connection
        self.leased_at = self.released_at = time.monotonic()

    def fresh(self, now: float) -> bool:
        return (
            now - self.released_at < REVALIDATE_AFTER_IDLE_S
            and now - self.leased_at < MAX_LEASE_AGE_S
            and not self.driver.is_closed()
        )


class Database:
    """The engine plus the one way handlers borrow a connection (:meth:`connection`)."""

    def __init__(self, url: DatabaseUrl, *, pool_size: int = POOL_SIZE) -> None:
        self.engine: AsyncEngine = make_engine(
            url, read_only=True, pool_size=pool_size, application_name="cryptoetl-api"
        )
        self._idle: list[_Lease] = []
        self._slots = asyncio.Semaphore(pool_size)

    @asynccontextmanager
    async def connection(self, timeout: float = ACQUIRE_TIMEOUT_S) -> AsyncIterator[Any]:
        """Lend an asyncpg connection for the duration of the block.

        ``timeout`` bounds getting the connection (waiting for a slot, connecting), not the
        queries run with it.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise DatabaseUnavailable("the database is busy; retry shortly") from None
        try:
            lease = await self._lease(timeout)
            try:
                yield lease.driver
            except BaseException as exc:
                await self._after_failure(lease, exc)
                raise
            self._release(lease)
        finally:
            self._slots.release()

    async def _after_failure(self, lease: _Lease, exc: BaseException) -> None:
        """Decide the fate of a connection whose block raised; a dead one means 503."""
        if isinstance(exc, asyncio.CancelledError):
            await self._discard(lease)  # cancelled mid-protocol (the client went away)
        elif is_connection_error(exc):
            await self._discard(lease)
            await self._drop_idle()  # the idle ones most likely lost their server too
            raise DatabaseUnavailable() from exc
        else:
            self._release(lease)  # e.g. a 404 raised by the handler: the connection is fine

    async def _lease(self, timeout: float) -> _Lease:
        now = time.monotonic()
        while self._idle:
            lease = self._idle.pop()
            if lease.fresh(now):
                return lease
            await _close_quietly(lease.conn)  # back to the pool: the next checkout pre-pings
        conn = self.engine.connect()
        try:
            async with asyncio.timeout(timeout):
                await conn.start()
                raw = await conn.get_raw_connection()
        except BaseException as exc:
            await _close_quietly(conn)
            if isinstance(exc, Exception):
                # Connecting can only fail for reasons the client cannot fix: report 503.
                raise DatabaseUnavailable() from exc
            raise
        return _Lease(conn, raw.driver_connection)

    def _release(self, lease: _Lease) -> None:
        lease.released_at = time.monotonic()
        self._idle.append(lease)

    async def _discard(self, lease: _Lease) -> None:
        with contextlib.suppress(Exception):
            await lease.conn.invalidate()
        await _close_quietly(lease.conn)

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for lease in idle:
            await _close_quietly(lease.conn)

    async def dispose(self) -> None:
        await self._drop_idle()
        await self.engine.dispose()


async def _close_quietly(conn: AsyncConnection) -> None:
    # Closing a connection whose server is gone may raise; there is nothing left to do.
    with contextlib.suppress(Exception):
        await conn.close()


def provide_db(state: State) -> Database:
    """Litestar dependency: the process's :class:`Database` (created by ``create_app``)."""
    db = state.db
    assert isinstance(db, Database)
    return db
