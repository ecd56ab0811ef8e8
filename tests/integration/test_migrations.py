"""Alembic owns the schema: migrations round-trip, agree with the models, and set up roles."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from cryptoetl.db.tables import SCHEMA_REVISION, declared_here, metadata
from cryptoetl.migrate import migration_heads
from cryptoetl.pipeline.documents import iso_utc
from tests.pg import REPO_ROOT, TestDatabase, fresh_database, migrate, with_user


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_upgrade_downgrade_upgrade_from_empty(pg_server: str) -> None:
    with fresh_database(pg_server, migrated=False) as db:
        migrate(db.admin_url, db.writer_role, db.reader_role, "head")
        assert set(metadata.tables) <= _tables(db.admin_url)
        migrate(db.admin_url, db.writer_role, db.reader_role, "base")
        assert _tables(db.admin_url) == {"alembic_version"}
        migrate(db.admin_url, db.writer_role, db.reader_role, "head")
        assert set(metadata.tables) <= _tables(db.admin_url)


def test_the_tables_declare_the_head_revision() -> None:
    """The worker trusts SCHEMA_REVISION instead of reading the scripts at every start."""
    assert migration_heads() == {SCHEMA_REVISION}


def test_models_and_migrations_agree(database: TestDatabase) -> None:
    sync_url = database.admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(sync_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": declared_here}
        )
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def test_news_count_triggers_follow_upserts_and_deletes(
    database: TestDatabase, clean_db: TestDatabase
) -> None:
    upsert = (
        "INSERT INTO news_items (source_type, source_id, title, mentioned_asset_ids, "
        "source_timestamp, content_hash) VALUES ('rss', %s, 't', %s, now(), '\\x00'), "
        "('rss', %s, 't', %s, now(), '\\x00') ON CONFLICT (source_type, source_id) "
        "DO UPDATE SET mentioned_asset_ids = excluded.mentioned_asset_ids"
    )
    actual = (
        "SELECT 0::bigint, count(*) FROM news_items UNION ALL "
        "SELECT a, count(*) FROM news_items, unnest(mentioned_asset_ids) a GROUP BY a"
    )
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute(upsert, ("a", [1, 2], "b", [2]))
        conn.execute(upsert, ("a", [3], "c", []))  # a: mentions 1, 2 -> 3; c is new
        conn.execute("DELETE FROM news_items WHERE source_id = 'b'")
        counts = dict(conn.execute("SELECT asset_id, n FROM news_counts WHERE n <> 0").fetchall())
        expected = dict(conn.execute(actual).fetchall())
    assert counts == expected == {0: 2, 3: 1}


def test_records_view_writes_source_ids_as_the_api_does(database: TestDatabase) -> None:
    """The view's SQL twin of :func:`iso_utc`: whole seconds without a fraction, else six
    digits, always UTC with ``Z``."""
    stamps = [
        datetime(2024, 11, 5, 11, 50, 50, 850000, tzinfo=UTC),
        datetime(2024, 11, 5, 12, tzinfo=UTC),
        datetime(2021, 3, 1, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=-5))),
    ]
    with psycopg.connect(database.admin_url) as conn:  # rolled back on leaving
        asset = conn.execute(
            "INSERT INTO assets (slug, symbol, name, normalized_name) "
            "VALUES ('view-coin', 'VWC', 'View', 'view') "
            "RETURNING id"
        ).fetchone()
        series, key = conn.execute(
            "INSERT INTO market_series (source_type, venue, base, symbol, quote, interval, "
            "asset_id) VALUES ('csv', 'file:view', 'VWC', 'VWC', 'USD', '1d', %s) "
            "RETURNING id, key",
            asset,
        ).fetchone()
        for ts in stamps:
            conn.execute(
                "INSERT INTO market_observations (source_type, series_id, source_timestamp) "
                "VALUES ('csv', %s, %s)",
                (series, ts),
            )
        rows = conn.execute(
            "SELECT source_id FROM records WHERE series_id = %s ORDER BY source_timestamp",
            (series,),
        ).fetchall()
        conn.rollback()
    assert [r[0] for r in rows] == [f"{key}@{iso_utc(ts)}" for ts in sorted(stamps)]
    assert rows[-1][0].endswith("@2024-11-05T12:00:00Z")


def _create_logins(db: TestDatabase, writer: str, reader: str) -> None:
    env = {
        **os.environ,
        "CRYPTOETL_WRITER_USER": writer,
        "CRYPTOETL_WRITER_PASSWORD": "writer-" + uuid.uuid4().hex,
        "CRYPTOETL_READER_USER": reader,
        "CRYPTOETL_READER_PASSWORD": "reader-" + uuid.uuid4().hex,
        "DB_WRITER_ROLE": db.writer_role,
        "DB_READER_ROLE": db.reader_role,
        "CRYPTOETL_DB": db.name,
        "ADMIN_DATABASE_URL": db.admin_url,
    }
    subprocess.run(
        ["bash", str(REPO_ROOT / "deploy/postgres/create-logins.sh")],
        env=env,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def logins(database: TestDatabase, pg_server: str):  # type: ignore[no-untyped-def]
    suffix = uuid.uuid4().hex[:8]
    writer, reader = f"cetl_wl_{suffix}", f"cetl_rl2_{suffix}"
    _create_logins(database, writer, reader)
    # Running it twice is safe (idempotent).
    _create_logins(database, writer, reader)
    yield writer, reader
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for role in (writer, reader):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_reader_login_can_select_but_never_write(
    database: TestDatabase, logins: tuple[str, str]
) -> None:
    _, reader = logins
    url = with_user(database.admin_url, reader)
    for table in sorted(metadata.tables):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"SELECT * FROM {table} LIMIT 1")
            # Even with the session forced writable, the role has no INSERT privilege.
            conn.execute("SET default_transaction_read_only = off")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"INSERT INTO {table} DEFAULT VALUES")


def test_reader_sessions_start_read_only(database: TestDatabase, logins: tuple[str, str]) -> None:
    _, reader = logins
    with psycopg.connect(with_user(database.admin_url, reader), autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO checkpoints (source_type) VALUES ('csv')")


def test_writer_login_can_write(
    database: TestDatabase, logins: tuple[str, str], clean_db: TestDatabase
) -> None:
    writer, _ = logins
    with psycopg.connect(with_user(database.admin_url, writer), autocommit=True) as conn:
        conn.execute("INSERT INTO checkpoints (source_type) VALUES ('rss')")
        conn.execute(
            "INSERT INTO assets (slug, symbol, name, normalized_name) VALUES ('x', 'X', 'X', 'x')"
        )


def test_table_added_later_is_readable_by_reader(
    database: TestDatabase, logins: tuple[str, str]
) -> None:
    """Default privileges: a table a later migration creates is readable without a new grant."""
    _, reader = logins
    table = f"later_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (x int)")
    try:
        with psycopg.connect(with_user(database.admin_url, reader), autocommit=True) as conn:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    finally:
        with psycopg.connect(database.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")
