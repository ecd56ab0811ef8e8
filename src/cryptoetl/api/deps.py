"""The API's database access: one asyncpg pool per process, lent to handlers by DI.

Read-only twice over: the pool logs in with the reader role from ``API_DATABASE_URL`` (SELECT
grants only) *and* every session starts with ``default_transaction_read_only = on``, so even a
mis-granted role cannot write through us.

Planned once: sessions use ``plan_cache_mode = force_generic_plan`` (see ``Database``).

Bounded in time: every session also starts with ``statement_timeout`` and ``lock_timeout``
(``API_STATEMENT_TIMEOUT_MS``, ``API_LOCK_TIMEOUT_MS``), so a lock held by someone else or a
plan gone wrong becomes a 503 in bounded time instead of a request (and a pooled connection)
hanging for as long as the lock; waiting for a connection while all are lent is bounded by
:data:`ACQUIRE_TIMEOUT_S`, opening one by :data:`CONNECT_TIMEOUT_S`.

The pool is asyncpg's own: connections are closed after :data:`MAX_INACTIVE_S` idle, and all
expired at once when one of them finds the database gone (they most likely share its fate), so
the API recovers by itself once the database is back. Reset on release is :func:`_reset`: the
API's handlers only run read-only statements and never change session state (no SET, LISTEN,
advisory lock or cursor), so asyncpg's default reset (``UNLISTEN *; RESET ALL; ...``, one more
round trip for every request) is replaced by ending a transaction a failed handler left open.
Statements are prepared once per connection and cached by asyncpg; each runs in autocommit,
its own read-only transaction, with no BEGIN/COMMIT round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar import Request
from litestar.datastructures import State

from cryptoetl.api.errors import ApiError, DatabaseBusy, database_error, database_problem
from cryptoetl.config import DatabaseUrl

# Enough connections for one Granian worker to keep a 2-core PostgreSQL busy; more would only
# queue inside the server. Requests beyond this wait for a connection of the pool.
POOL_SIZE = 8
ACQUIRE_TIMEOUT_S = 10.0
# /health answers within this bound even when the database hangs or black-holes packets.
HEALTH_TIMEOUT_S = 2.0
MAX_INACTIVE_S = 60.0
CONNECT_TIMEOUT_S = 5.0


class Database:
    """The pool plus the one way handlers borrow a connection (:meth:`connection`)."""

    def __init__(
        self,
        url: DatabaseUrl,
        *,
        pool_size: int = POOL_SIZE,
        statement_timeout_ms: int = 5000,
        lock_timeout_ms: int = 2000,
    ) -> None:
        self._url = url
        self._size = pool_size
        self._settings = {
            "application_name": "cryptoetl-api",
            "default_transaction_read_only": "on",
            "statement_timeout": str(statement_timeout_ms),
            "lock_timeout": str(lock_timeout_ms),
            "idle_in_transaction_session_timeout": str(max(statement_timeout_ms, 1000)),
            # The API's statements have fixed shapes and bound values; planning one (partitions,
            # a union, the total's subqueries) costs more than running it, and a custom plan
            # would be made for every value of `until` a client sends. One generic plan per
            # connection and statement (partitions are still pruned at run time).
            "plan_cache_mode": "force_generic_plan",
        }
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._lent = 0  # connections lent by connection() and not yet returned

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    # min_size 0: the app starts (and answers 503) while the database is down.
                    self._pool = await asyncpg.create_pool(
                        self._url.reveal(),
                        min_size=0,
                        max_size=self._size,
                        max_inactive_connection_lifetime=MAX_INACTIVE_S,
                        timeout=CONNECT_TIMEOUT_S,
                        server_settings=self._settings,
                        reset=_reset,
                    )
        return self._pool

    @asynccontextmanager
    async def connection(self, timeout: float = ACQUIRE_TIMEOUT_S) -> AsyncIterator[Any]:
        """Lend a connection for the duration of the block; ``timeout`` bounds getting it."""
        try:
            pool = self._pool or await self._get_pool()
            if self._lent < self._size:
                # A connection of the pool is free, or may be opened (bounded by
                # CONNECT_TIMEOUT_S): no waiting for another request's, so no timer to arm
                # (arming and cancelling one cost a twentieth of a page served afresh).
                conn = await pool.acquire()
            else:
                async with asyncio.timeout(timeout):
                    conn = await pool.acquire()
        except TimeoutError:
            raise DatabaseBusy("no database connection became free in time") from None
        except Exception as exc:
            problem = database_problem(exc)
            if problem is None:
                raise
            raise database_error(problem) from exc
        self._lent += 1
        try:
            yield conn
        except ApiError:
            raise  # the handler's own answer (a 400, a 404)
        except Exception as exc:
            problem = database_problem(exc)
            if problem is None:
                raise
            if problem.kind == "unavailable":
                await pool.expire_connections()
            raise database_error(problem) from exc
        finally:
            try:
                await _release(pool, conn)
            finally:
                self._lent -= 1  # once it is back in the pool: then acquire() finds it free

    async def dispose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                pool.terminate()


async def _reset(conn: Any) -> None:
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _release(pool: asyncpg.Pool, conn: Any) -> None:
    try:
        await pool.release(conn, timeout=CONNECT_TIMEOUT_S)
    except Exception:
        # A connection that cannot even be reset (the server went away, the client
        # cancelled mid-protocol) is closed; the pool opens a new one when needed.
        conn.terminate()


def provide_db(state: State) -> Database:
    """Litestar dependency: the process's :class:`Database` (created by ``create_app``)."""
    db = state.db
    assert isinstance(db, Database)
    return db


def database_of(request: Request[Any, Any, Any]) -> Database:
    """The process's :class:`Database`, for a hot handler that skips dependency injection."""
    return provide_db(request.app.state)
