"""Database problems classified from real PostgreSQL errors (cryptoetl.db.errors), and the one
retry loop (cryptoetl.db.wait): what is waited for, for how long, and what is not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoetl.config import DatabaseUrl
from cryptoetl.db.engine import make_engine
from cryptoetl.db.errors import (
    DatabaseProblem,
    DatabaseTrouble,
    classify,
    database_troubles,
)
from cryptoetl.db.wait import Patience, WaitStopped, patiently
from cryptoetl.dev import free_port
from tests.pg import TestDatabase, with_database, with_user


def _engine(url: str) -> AsyncEngine:
    return make_engine(DatabaseUrl(url, "TEST_DATABASE_URL"), pool_size=1)


async def _problem_of(url: str, sql: str = "SELECT 1") -> DatabaseProblem | None:
    """What running ``sql`` through the worker's engine at ``url`` fails with, classified."""
    engine = _engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(sql))
    except Exception as exc:
        return classify(exc)
    finally:
        await engine.dispose()
    raise AssertionError(f"{sql!r} did not fail")


def _closed_port_url(url: str) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit((parts.scheme, f"{user}@127.0.0.1:{free_port()}", parts.path, "", ""))


@pytest.fixture
async def engine_at(database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = _engine(database.admin_url)
    yield engine
    await engine.dispose()


async def test_a_login_the_server_does_not_know_is_refused(database: TestDatabase) -> None:
    problem = await _problem_of(with_user(database.admin_url, "no_such_login_3f9a"))
    assert problem is not None
    assert (problem.kind, problem.transient) == ("refused", False)
    assert problem.cause == "the database refused the login"
    assert 'role "no_such_login_3f9a" does not exist' in problem.detail
    assert "DATABASE_URL" in problem.fix


async def test_an_unknown_database_is_refused(database: TestDatabase) -> None:
    problem = await _problem_of(with_database(database.admin_url, "no_such_db_3f9a"))
    assert problem is not None
    assert problem.kind == "refused"
    assert problem.cause == "the database does not exist"
    assert "check the database name in DATABASE_URL" in problem.line()


async def test_a_closed_port_is_unavailable_and_transient(database: TestDatabase) -> None:
    problem = await _problem_of(_closed_port_url(database.admin_url))
    assert problem is not None
    assert (problem.kind, problem.transient) == ("unavailable", True)
    assert problem.cause == "cannot reach the database"


async def test_a_missing_table_is_the_schema_and_names_the_migration(
    database: TestDatabase,
) -> None:
    problem = await _problem_of(database.admin_url, "SELECT * FROM no_such_table_3f9a")
    assert problem is not None
    assert (problem.kind, problem.transient) == ("schema", False)
    assert problem.detail == 'relation "no_such_table_3f9a" does not exist'
    assert problem.line().endswith("run `cryptoetl migrate`")
    assert "[SQL:" not in problem.line()  # SQLAlchemy's statement text stays out of the line


async def test_statement_and_lock_timeouts_are_busy(
    database: TestDatabase, engine_at: AsyncEngine
) -> None:
    async with engine_at.connect() as conn:
        await conn.execute(sa.text("SET statement_timeout = 50"))
        with pytest.raises(sa.exc.DBAPIError) as timeout:
            await conn.execute(sa.text("SELECT pg_sleep(2)"))
    with psycopg.connect(database.admin_url) as holder:
        holder.execute("LOCK TABLE worker_heartbeats IN ACCESS EXCLUSIVE MODE")
        async with engine_at.connect() as conn:
            await conn.execute(sa.text("SET lock_timeout = 50"))
            with pytest.raises(sa.exc.DBAPIError) as locked:
                await conn.execute(sa.text("SELECT count(*) FROM worker_heartbeats"))
    for error in (timeout.value, locked.value):
        problem = classify(error)
        assert problem is not None
        assert (problem.kind, problem.transient) == ("busy", True), problem


async def test_a_read_only_database_is_unavailable(engine_at: AsyncEngine) -> None:
    async with engine_at.connect() as conn:
        await conn.execute(sa.text("SET default_transaction_read_only = on"))
        await conn.commit()
        with pytest.raises(sa.exc.DBAPIError) as refused:
            await conn.execute(sa.text("CREATE TEMPORARY TABLE t (x int)"))
    problem = classify(refused.value)
    assert problem is not None
    assert (problem.kind, problem.transient) == ("unavailable", True)
    assert "read-only" in problem.cause


async def test_a_terminated_backend_is_named_not_the_failed_rollback(
    database: TestDatabase, engine_at: AsyncEngine
) -> None:
    """The worker's case: the connection is killed inside a transaction; SQLAlchemy's rollback
    on exit fails too, and that is not what is reported."""

    async def killed_inside_a_transaction() -> None:
        async with engine_at.begin() as conn:
            pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
            with psycopg.connect(database.admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await conn.execute(sa.text("SELECT 1"))

    with pytest.raises(sa.exc.SQLAlchemyError) as cut:
        await killed_inside_a_transaction()
    problem = classify(cut.value)
    assert problem is not None
    assert problem.kind == "unavailable"
    assert "rollback" not in problem.line().lower()
    assert problem.cause in (
        "the connection to the database was lost",
        "the database ended the connection",
    )


async def test_a_connection_left_mid_operation_is_unavailable_not_a_bug(
    engine_at: AsyncEngine,
) -> None:
    """asyncpg refuses an operation on a connection whose earlier one was cancelled half-way.
    Raised here as the driver raises it, translated by SQLAlchemy's adapter of a real connection."""
    stuck = asyncpg.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    )
    async with engine_at.connect() as conn:
        adapter = (await conn.get_raw_connection()).dbapi_connection
        try:
            raise stuck
        except asyncpg.InternalClientError as exc:
            try:
                adapter._handle_exception(exc)  # type: ignore[union-attr]
            except Exception as translated:  # the adapter's own class, caused by asyncpg's
                wrapped = translated
    problem = classify(wrapped)
    assert problem is not None
    assert problem.kind == "unavailable"
    assert problem.transient
    assert problem.cause == "a database connection was left unusable by an interrupted operation"
    assert "cannot switch to state 12" in problem.detail
    assert classify(asyncpg.ProtocolError("unexpected message")) is not None


async def test_errors_that_are_not_the_databases_are_not_classified(
    engine_at: AsyncEngine,
) -> None:
    async with engine_at.connect() as conn:
        with pytest.raises(sa.exc.ProgrammingError) as typo:
            await conn.execute(sa.text("SELEC 1"))
    assert classify(typo.value) is None  # a bug in our SQL is not an outage
    assert classify(ValueError("bad value")) is None


async def test_database_troubles_turns_problems_into_one_exception(database: TestDatabase) -> None:
    with pytest.raises(DatabaseTrouble) as trouble, database_troubles():
        await asyncpg.connect(with_database(database.admin_url, "no_such_db_3f9a"))
    assert trouble.value.problem.kind == "refused"
    assert str(trouble.value) == trouble.value.problem.line()
    with pytest.raises(KeyError), database_troubles():
        raise KeyError("not the database's")


# --------------------------------------------------------------------------- waiting


def _connect(url: str):  # type: ignore[no-untyped-def]
    async def attempt() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    return attempt


async def test_a_bounded_wait_ends_within_its_bound(database: TestDatabase) -> None:
    patience = Patience((0.2, 0.5), bound_s=1.5, bound_setting="DB_WAIT_S")
    started = time.monotonic()
    with pytest.raises(DatabaseTrouble) as trouble:
        await patiently(_connect(_closed_port_url(database.admin_url)), patience)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 5, elapsed
    assert trouble.value.problem.cause == "cannot reach the database, still after 1.5 s (DB_WAIT_S)"


async def test_a_refusal_is_not_waited_for_unless_every_kind_is(database: TestDatabase) -> None:
    wrong = with_user(database.admin_url, "no_such_login_3f9a")
    started = time.monotonic()
    with pytest.raises(DatabaseTrouble) as trouble:
        await patiently(_connect(wrong), Patience((5.0,), bound_s=30, bound_setting="DB_WAIT_S"))
    assert time.monotonic() - started < 4, "a refused login is not worth another try"
    assert trouble.value.problem.kind == "refused"

    # The daemon's patience waits for it too, until it is stopped.
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(1.0, stop.set)
    started = time.monotonic()
    with pytest.raises(WaitStopped):
        await patiently(_connect(wrong), Patience((0.2,), every_kind=True), stop=stop)
    assert 1.0 <= time.monotonic() - started < 4


async def test_a_stop_abandons_an_attempt_under_way() -> None:
    """A connect that would hang (a black-holed database) does not hold a stopping daemon."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)

    async def hangs() -> None:
        await asyncio.sleep(60)

    started = time.monotonic()
    with pytest.raises(WaitStopped):
        await patiently(hangs, Patience((1.0,), every_kind=True), stop=stop)
    assert time.monotonic() - started < 2


async def test_a_wait_that_succeeds_returns_the_result(database: TestDatabase) -> None:
    async def value() -> int:
        conn = await asyncpg.connect(database.admin_url)
        try:
            return int(await conn.fetchval("SELECT 41 + 1"))
        finally:
            await conn.close()

    assert await patiently(value, Patience((0.1,), bound_s=5, bound_setting="x")) == 42
