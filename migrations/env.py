"""Async Alembic environment: DATABASE_URL from the environment, asyncpg underneath.

A caller may pass a ready connection in ``config.attributes["connection"]`` (tests do).

* Logging follows ``alembic.ini`` (which revision runs, on stderr), so ``docker compose logs
  migrate`` and a migration Job's log say what happened. A database that refuses the login or
  cannot be reached is one line naming the cause and the fix, and exit status 1.
* Upgrades are serialised by a session advisory lock, taken on the migration connection before
  Alembic reads the current revision: a second ``alembic upgrade head`` started at the same time
  (two replicas, a Job retried while the first is still running) waits, then finds the database
  at head and does nothing, instead of failing halfway through the first one's catalog changes.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from cryptoetl.config import Settings, exit_with_error, load_settings_or_exit
from cryptoetl.db.errors import classify
from cryptoetl.db.tables import declared_here, metadata

config = context.config
target_metadata = metadata

# The two-key form keeps this lock apart from the worker's per-source locks (namespace "CET1").
MIGRATION_LOCK = {"namespace": 0x43454D31, "key": 0}  # "CEM1"

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:namespace, :key)"), MIGRATION_LOCK)
    # The lock belongs to the session; the transaction that took it is ended so that each
    # migration runs in a transaction of its own (transaction_per_migration).
    connection.commit()
    try:
        _migrate(connection)
    finally:
        if connection.in_transaction():  # a failed migration: end it so that unlocking can run
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:namespace, :key)"), MIGRATION_LOCK)
        connection.commit()


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=False,
        include_object=declared_here,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    settings = load_settings_or_exit(Settings.require_database_url)
    url = settings.require_database_url()
    engine = create_async_engine(url.sqlalchemy_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    except Exception as exc:
        # The database's refusals and outages are one line (cause and fix); a migration's own
        # error (which may look like a missing table) keeps its traceback.
        problem = classify(exc)
        if problem is None or problem.kind == "schema":
            raise
        exit_with_error(settings.redactor()(problem.line()), 1)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    settings = load_settings_or_exit()
    context.configure(
        url=settings.require_database_url().sqlalchemy_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
