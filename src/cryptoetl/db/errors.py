"""What went wrong with the database, decided in one place for the worker, the commands and the API.

:func:`classify` turns any exception (asyncpg's, SQLAlchemy's wrapping of it, an ``OSError``)
into a :class:`DatabaseProblem` of one of four kinds, or ``None`` for everything else (a bug, a
bad file: not the database's doing). The exception chain is searched, and the server's own
error code (SQLSTATE) deepest in it wins: after a terminated backend the exception at the top
is SQLAlchemy failing to roll back on a closed connection, the cause is the termination.

=============  =================================================================  ==========
kind           what it means (SQLSTATE)                                           transient
=============  =================================================================  ==========
unavailable    nothing answers, the connection broke, timed out or was left       yes
               mid-operation (class 08, ``OSError``, ``TimeoutError``, asyncpg's
               ``InternalClientError``); the server is starting, stopping
               or recovering (57P03, 57P01, 57P02), has no free connection slot
               (53300) or is read-only (25006: a standby, a failover under way)
busy           it answers, not in time: statement or lock timeout (57014,         yes
               55P03), no pooled connection free
refused        it answered no: wrong password (28P01), unknown login or no        no
               pg_hba entry (28000), unknown database (3D000), a missing
               privilege (42501)
schema         our tables are missing or older than this code (42P01, 42703,      no
               3F000), or the Alembic revision is not this code's head
               (:func:`schema_behind`, :func:`schema_ahead`)
=============  =================================================================  ==========

**Which refusals are transient.** The server refusing us because of its own state (starting
up, in recovery, out of connection slots) is counted as *unavailable*: it will take us once
that passes. A refusal of *our* login, database or privileges is not transient: another try a
second later gets the same answer, until an operator changes something.

**Who waits for what.**

* ``worker --once`` and ``cryptoetl migrate`` wait for transient problems within their bound
  (``DB_WAIT_S``, ``--wait``) and stop at once on the others; ``wait-for-schema`` waits for the
  schema too (that is its purpose), ``worker --check`` and ``alembic`` try once. Each command
  reports the problem that stops it as one line on stderr (:meth:`DatabaseProblem.line`), exit 1.
* The daemon (``cryptoetl worker``) waits for every kind, with its patient backoff, and logs the
  line each time: a login created late, a password corrected on the server or a migration run
  by an operator is picked up without a restart.
* The API answers 503 with the kind in its ``error`` code and a fixed message per kind (never
  the exception's text: see :mod:`cryptoetl.api.errors`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from cryptoetl.redaction import truncate

Kind = Literal["unavailable", "busy", "refused", "schema"]
TRANSIENT_KINDS: frozenset[Kind] = frozenset({"unavailable", "busy"})
MIGRATE_HINT = "run `cryptoetl migrate`"
_DETAIL_CHARS = 200
_CHAIN_DEPTH = 16


@dataclass(frozen=True)
class DatabaseProblem:
    """One database problem: its kind, what happened and what to do about it."""

    kind: Kind
    cause: str  # what happened, e.g. "the database refused the login"
    detail: str  # what the server or the driver said, one line
    fix: str  # what to do, naming the setting or the command

    @property
    def transient(self) -> bool:
        """Worth waiting for: it passes without anyone doing anything."""
        return self.kind in TRANSIENT_KINDS

    def line(self) -> str:
        """The one line for a log or stderr: cause, the database's words, the fix."""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.cause}{detail}; {self.fix}"


class DatabaseTrouble(Exception):
    """Raised with a :class:`DatabaseProblem` found by a check rather than by an error
    (the schema behind, a wait that ran out); :func:`classify` returns its problem."""

    def __init__(self, problem: DatabaseProblem) -> None:
        super().__init__(problem.line())
        self.problem = problem


Known = tuple[Kind, str, str]  # kind, cause, fix

# SQLSTATE -> (kind, cause, fix). ``{url}`` is the variable naming the database URL. A fix says
# what an operator can do; whether anything is retried meanwhile is the caller's to say.
_SERVER_LOG = "see the PostgreSQL server's log"
_LOCKS = "look for long statements and locks in pg_stat_activity"
_SCHEMA = "the database schema is missing or behind this version"
_BY_SQLSTATE: dict[str, Known] = {
    "57P01": ("unavailable", "the database ended the connection", _SERVER_LOG),
    "57P02": ("unavailable", "the database server crashed", _SERVER_LOG),
    "57P03": ("unavailable", "the database is not accepting connections yet", _SERVER_LOG),
    "53300": (
        "unavailable",
        "the database has no free connection slot",
        "raise the server's max_connections or run fewer workers",
    ),
    "25006": (
        "unavailable",
        "the database is read-only (a standby, or a failover under way)",
        "point {url} at the primary",
    ),
    "57014": ("busy", "the database cancelled a statement", _LOCKS),
    "55P03": ("busy", "a lock was not granted in time", _LOCKS),
    "28P01": (
        "refused",
        "the database refused the login",
        "check the user name and password in {url}",
    ),
    "28000": (
        "refused",
        "the database refused the login",
        "check the user name in {url} and the server's pg_hba.conf "
        "(deploy/postgres/create-logins.sh creates the logins)",
    ),
    "3D000": (
        "refused",
        "the database does not exist",
        "check the database name in {url}, or create it",
    ),
    "42501": (
        "refused",
        "the login lacks a privilege",
        "make it a member of DB_WRITER_ROLE or DB_READER_ROLE "
        f"(deploy/postgres/create-logins.sh) and {MIGRATE_HINT} as the database owner",
    ),
    "42P01": ("schema", _SCHEMA, MIGRATE_HINT),
    "42703": ("schema", _SCHEMA, MIGRATE_HINT),
    "3F000": ("schema", _SCHEMA, MIGRATE_HINT),
}
_CONNECTION_CLASS = "08"
# Class 08 codes that mean "never connected"; the others mean a connection was lost.
_NOT_CONNECTED = frozenset({"08001", "08004"})
_UNREACHABLE: Known = (
    "unavailable",
    "cannot reach the database",
    "check that PostgreSQL is running at the host and port of {url}",
)
_LOST: Known = (
    "unavailable",
    "the connection to the database was lost",
    "check the server and the network to it (the server's log says whether it ended it)",
)
# asyncpg's own state machine refusing an operation ("cannot switch to state 12; another
# operation is in progress") after one was cancelled half-way, e.g. by a timeout during an
# outage. The connection is unusable, not the database: the pool's pre-ping discards it and
# the next attempt opens a new one, so it is transient like a lost connection.
_UNUSABLE: Known = (
    "unavailable",
    "a database connection was left unusable by an interrupted operation",
    "none needed if it passes (a new connection replaces it); if it recurs, "
    "see the log lines before it",
)
_POOL_EXHAUSTED: Known = (
    "busy",
    "no database connection became free in time",
    _LOCKS,
)


@functools.cache
def _without_sqlstate() -> tuple[tuple[type[BaseException], Known], ...]:
    """Errors without a SQLSTATE: the network, a connection found closed, SQLAlchemy's own
    limits. The first match wins. (Imported here: the command line imports this module before
    it knows whether it will touch a database at all.)"""
    import asyncpg
    import sqlalchemy.exc

    return (
        (sqlalchemy.exc.TimeoutError, _POOL_EXHAUSTED),
        (ConnectionResetError, _LOST),
        (ConnectionAbortedError, _LOST),
        (BrokenPipeError, _LOST),
        (OSError, _UNREACHABLE),  # refused, unreachable, DNS; TimeoutError is one
        (asyncpg.InterfaceError, _LOST),  # "connection is closed"
        (asyncpg.InternalClientError, _UNUSABLE),  # and its ProtocolError
        (sqlalchemy.exc.InterfaceError, _LOST),
        (sqlalchemy.exc.DisconnectionError, _LOST),
    )


def classify(exc: BaseException, url_variable: str = "DATABASE_URL") -> DatabaseProblem | None:
    """The database problem behind ``exc``, or None when it is not the database's doing."""
    chain = list(_chain(exc))
    for link in chain:
        if isinstance(link, DatabaseTrouble):
            return link.problem
    for link in reversed(chain):  # the deepest SQLSTATE: the server's account of the cause
        known = _known_sqlstate(_sqlstate(link) or "")
        if known is not None:
            return _problem(known, link, url_variable)
    for link in chain:
        for kind, known in _without_sqlstate():
            if isinstance(link, kind):
                return _problem(known, link, url_variable)
        # SQLAlchemy marks errors after which it threw the connection away.
        if getattr(link, "connection_invalidated", False) is True:
            return _problem(_LOST, link, url_variable)
    return None


@contextlib.contextmanager
def database_troubles(url_variable: str = "DATABASE_URL") -> Iterator[None]:
    """Database problems raised inside become :class:`DatabaseTrouble`; anything else passes."""
    try:
        yield
    except DatabaseTrouble:
        raise
    except Exception as exc:
        problem = classify(exc, url_variable)
        if problem is None:
            raise
        raise DatabaseTrouble(problem) from None


def schema_behind(current: set[str], heads: set[str]) -> DatabaseProblem:
    """A database at revisions ``current`` (Alembic's), older than the ``heads`` this code needs."""
    found = ", ".join(sorted(current)) if current else "none: never migrated"
    return DatabaseProblem(
        "schema",
        "the database schema is behind this version",
        f"its revision is {found}; this version needs {', '.join(sorted(heads))}",
        MIGRATE_HINT,
    )


def schema_ahead(unknown: set[str]) -> DatabaseProblem:
    """A database migrated by a newer release (its revisions ``unknown`` to this code)."""
    return DatabaseProblem(
        "schema",
        "the database schema is newer than this version",
        f"its revision {', '.join(sorted(unknown))} is unknown here",
        "run the release that migrated it",
    )


def wait_ran_out(problem: DatabaseProblem, waited_s: float, setting: str) -> DatabaseProblem:
    """``problem`` once a wait of ``waited_s`` (bounded by ``setting``) did not see it pass."""
    return replace(problem, cause=f"{problem.cause}, still after {waited_s:g} s ({setting})")


def _problem(known: Known, exc: BaseException, url_variable: str) -> DatabaseProblem:
    kind, cause, fix = known
    return DatabaseProblem(kind, cause, _detail(exc), fix.format(url=url_variable))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, outermost first: SQLAlchemy's ``orig``, else Python's
    ``__cause__``, else the ``__context__`` it was raised in."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_DEPTH:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            current = orig
        elif current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__  # ``raise ... from None`` ends the chain, as in tracebacks
        else:
            current = current.__context__


def _known_sqlstate(code: str) -> Known | None:
    if code.startswith(_CONNECTION_CLASS):
        return _UNREACHABLE if code in _NOT_CONNECTED else _LOST
    return _BY_SQLSTATE.get(code)


def _sqlstate(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None)
    return code if isinstance(code, str) else None


def _detail(exc: BaseException) -> str:
    """The exception's own words on one line, without SQLAlchemy's SQL and parameters (its
    errors keep the driver's in ``orig``)."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        exc = orig
    text = " ".join(str(exc).split("\n", 1)[0].split())
    if isinstance(exc, TimeoutError) and not text:
        text = "timed out"
    return truncate(text or type(exc).__name__, _DETAIL_CHARS)
