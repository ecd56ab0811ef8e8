"""initial schema: raw, normalized, assets, bookkeeping, roles, count triggers

Revision ID: 0001
Revises:
Create Date: 2026-11-29 13:03:24.356412
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from cryptoetl.config import load_settings_or_exit

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("normalized_name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
        sa.UniqueConstraint("slug", name=op.f("uq_assets_slug")),
    )
    op.create_index(op.f("ix_assets_symbol"), "assets", ["symbol"], unique=False)
    op.create_index(
        op.f("ix_assets_symbol_normalized_name"),
        "assets",
        ["symbol", "normalized_name"],
        unique=False,
    )
    op.create_table(
        "checkpoints",
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column(
            "cursor",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("status", sa.Text(), server_default="never_run", nullable=False),
        sa.Column("last_run_id", sa.UUID(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("records_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_run_processed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "source_type IN ('csv', 'coinpaprika', 'coingecko', 'rss')",
            name=op.f("ck_checkpoints_source_type"),
        ),
        sa.PrimaryKeyConstraint("source_type", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "raw_coingecko_markets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("content_hash", postgresql.BYTEA(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_coingecko_markets")),
        sa.UniqueConstraint(
            "source_key",
            "content_hash",
            name=op.f("uq_raw_coingecko_markets_source_key_content_hash"),
        ),
    )
    op.create_index(
        op.f("ix_raw_coingecko_markets_run_id"), "raw_coingecko_markets", ["run_id"], unique=False
    )
    op.create_table(
        "raw_coinpaprika_tickers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("content_hash", postgresql.BYTEA(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_coinpaprika_tickers")),
        sa.UniqueConstraint(
            "source_key",
            "content_hash",
            name=op.f("uq_raw_coinpaprika_tickers_source_key_content_hash"),
        ),
    )
    op.create_index(
        op.f("ix_raw_coinpaprika_tickers_run_id"),
        "raw_coinpaprika_tickers",
        ["run_id"],
        unique=False,
    )
    op.create_table(
        "raw_csv_rows",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("content_hash", postgresql.BYTEA(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_csv_rows")),
        sa.UniqueConstraint(
            "source_key", "content_hash", name=op.f("uq_raw_csv_rows_source_key_content_hash")
        ),
    )
    op.create_index(op.f("ix_raw_csv_rows_run_id"), "raw_csv_rows", ["run_id"], unique=False)
    op.create_table(
        "raw_rss_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("content_hash", postgresql.BYTEA(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_rss_entries")),
        sa.UniqueConstraint(
            "source_key", "content_hash", name=op.f("uq_raw_rss_entries_source_key_content_hash")
        ),
    )
    op.create_index(op.f("ix_raw_rss_entries_run_id"), "raw_rss_entries", ["run_id"], unique=False)
    op.create_table(
        "record_counts",
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source_type", "kind", "asset_id", name=op.f("pk_record_counts")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("status", sa.Text(), server_default="running", nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("processed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("inserted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("unchanged", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rejected", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("drift_events", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("raw_stored", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "warnings", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "source_type IN ('csv', 'coinpaprika', 'coingecko', 'rss')",
            name=op.f("ck_runs_source_type"),
        ),
        sa.CheckConstraint(
            "status IN ('running', 'success', 'failed', 'interrupted')", name=op.f("ck_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(
        "ix_runs_running",
        "runs",
        ["status"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_runs_source_started",
        "runs",
        ["source_type", sa.literal_column("started_at DESC")],
        unique=False,
    )
    op.create_index("ix_runs_started", "runs", [sa.literal_column("started_at DESC")], unique=False)
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_heartbeats")),
    )
    op.create_table(
        "asset_mappings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("match_method", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Numeric(precision=4, scale=3), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "source_type IN ('csv', 'coinpaprika', 'coingecko', 'rss')",
            name=op.f("ck_asset_mappings_source_type"),
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_asset_mappings_confidence")
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_asset_mappings_asset_id_assets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asset_mappings")),
        sa.UniqueConstraint(
            "source_type", "source_id", name=op.f("uq_asset_mappings_source_type_source_id")
        ),
    )
    op.create_index(
        op.f("ix_asset_mappings_asset_id"), "asset_mappings", ["asset_id"], unique=False
    )
    op.create_table(
        "drift_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("expected_type", sa.Text(), nullable=True),
        sa.Column("observed_type", sa.Text(), nullable=True),
        sa.Column("candidate_field", sa.Text(), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("sample", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "change IN ('added', 'removed', 'type_changed')", name=op.f("ck_drift_events_change")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_drift_events_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_events")),
        sa.UniqueConstraint(
            "run_id", "field", "change", name=op.f("uq_drift_events_run_id_field_change")
        ),
    )
    op.create_index(
        "ix_drift_events_source_created",
        "drift_events",
        ["source_type", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_table(
        "records",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("asset_id", sa.BigInteger(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("price_usd", sa.Float(), nullable=True),
        sa.Column("market_cap_usd", sa.Float(), nullable=True),
        sa.Column("volume_24h_usd", sa.Float(), nullable=True),
        sa.Column("change_24h_pct", sa.Float(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column(
            "tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "mentioned_asset_ids",
            postgresql.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("source_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", postgresql.BYTEA(), nullable=False),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("run_id", sa.UUID(), nullable=True),
        sa.Column(
            "inserted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "CASE WHEN title IS NULL AND summary IS NULL THEN NULL "
                "ELSE to_tsvector('english'::regconfig, "
                "coalesce(title, '') || ' ' || coalesce(summary, '')) END",
                persisted=True,
            ),
            nullable=True,
        ),
        sa.CheckConstraint("kind IN ('market', 'news')", name=op.f("ck_records_kind")),
        sa.CheckConstraint(
            "source_type IN ('csv', 'coinpaprika', 'coingecko', 'rss')",
            name=op.f("ck_records_source_type"),
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_records_asset_id_assets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint(
            "source_type", "source_id", name=op.f("uq_records_source_type_source_id")
        ),
    )
    op.create_index(
        "ix_records_asset_ts_id",
        "records",
        ["asset_id", sa.literal_column("source_timestamp DESC"), sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("asset_id IS NOT NULL"),
    )
    op.create_index(
        "ix_records_category_ts_id",
        "records",
        ["category", sa.literal_column("source_timestamp DESC"), sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("category IS NOT NULL"),
    )
    op.create_index(
        "ix_records_news_ts_id",
        "records",
        [sa.literal_column("source_timestamp DESC"), sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("kind = 'news'"),
    )
    op.create_index(
        "ix_records_mentioned_asset_ids",
        "records",
        ["mentioned_asset_ids"],
        unique=False,
        postgresql_using="gin",
        postgresql_where=sa.text("kind = 'news'"),
    )
    op.create_index(
        "ix_records_search_vector",
        "records",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
        postgresql_where=sa.text("search_vector IS NOT NULL"),
    )
    op.create_index(
        "ix_records_source_ts_id",
        "records",
        ["source_type", sa.literal_column("source_timestamp DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(
        "ix_records_ts_id",
        "records",
        [sa.literal_column("source_timestamp DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_table(
        "rejected_records",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_rejected_records_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_records")),
    )
    op.create_index(
        op.f("ix_rejected_records_run_id"), "rejected_records", ["run_id"], unique=False
    )
    op.create_index(
        "ix_rejected_records_source_created",
        "rejected_records",
        ["source_type", sa.literal_column("created_at DESC")],
        unique=False,
    )

    _create_count_triggers()
    _create_roles()


_COUNT_DELTA = """
    INSERT INTO record_counts AS c (source_type, kind, asset_id, n)
    SELECT source_type, kind, asset_id, sum(delta) FROM ({rows}) AS d
    GROUP BY source_type, kind, asset_id HAVING sum(delta) <> 0
    ON CONFLICT (source_type, kind, asset_id) DO UPDATE SET n = c.n + excluded.n
"""
_NEW = "SELECT source_type, kind, coalesce(asset_id, 0) AS asset_id, 1 AS delta FROM new_rows"
_OLD = "SELECT source_type, kind, coalesce(asset_id, 0) AS asset_id, -1 AS delta FROM old_rows"
_COUNT_TRIGGERS = {
    # name: (event, transition tables, rows feeding the delta)
    "insert": ("INSERT", "NEW TABLE AS new_rows", _NEW),
    "update": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", f"{_NEW} UNION ALL {_OLD}"),
    "delete": ("DELETE", "OLD TABLE AS old_rows", _OLD),
}


def _create_count_triggers() -> None:
    """Keep record_counts exact in the same transaction as every write to records."""
    for name, (event, referencing, rows) in _COUNT_TRIGGERS.items():
        op.execute(
            f"CREATE FUNCTION record_counts_on_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {_COUNT_DELTA.format(rows=rows)}; RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER records_count_{name} AFTER {event} ON records "
            f"REFERENCING {referencing} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION record_counts_on_{name}()"
        )


def _drop_count_triggers() -> None:
    for name in _COUNT_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS records_count_{name} ON records")
        op.execute(f"DROP FUNCTION IF EXISTS record_counts_on_{name}()")


def _roles() -> tuple[str, str]:
    settings = load_settings_or_exit()
    return settings.writer_role, settings.reader_role


def _create_roles() -> None:
    """Group roles (NOLOGIN): login users join them (deploy/postgres/create-logins.sh).

    Default privileges cover tables later migrations create (run by the same migrating user).
    """
    writer, reader = _roles()
    for role in (writer, reader):
        op.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
        )
        op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {writer}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {writer}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {writer}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {writer}"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {reader}")


def _drop_roles() -> None:
    writer, reader = _roles()
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {writer}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM {writer}"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {reader}")
    for role in (writer, reader):
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        op.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
        # Roles are cluster-wide: another database may still grant to this role, then keep it.
        op.execute(
            f"DO $$ BEGIN DROP ROLE IF EXISTS {role}; "
            "EXCEPTION WHEN dependent_objects_still_exist THEN "
            f"RAISE NOTICE 'role {role} still used elsewhere, kept'; END $$"
        )


def downgrade() -> None:
    _drop_roles()
    _drop_count_triggers()
    op.drop_index("ix_rejected_records_source_created", table_name="rejected_records")
    op.drop_index(op.f("ix_rejected_records_run_id"), table_name="rejected_records")
    op.drop_table("rejected_records")
    op.drop_index("ix_records_ts_id", table_name="records")
    op.drop_index("ix_records_source_ts_id", table_name="records")
    op.drop_index("ix_records_search_vector", table_name="records", postgresql_using="gin")
    op.drop_index("ix_records_mentioned_asset_ids", table_name="records", postgresql_using="gin")
    op.drop_index("ix_records_news_ts_id", table_name="records")
    op.drop_index("ix_records_category_ts_id", table_name="records")
    op.drop_index("ix_records_asset_ts_id", table_name="records")
    op.drop_table("records")
    op.drop_index("ix_drift_events_source_created", table_name="drift_events")
    op.drop_table("drift_events")
    op.drop_index(op.f("ix_asset_mappings_asset_id"), table_name="asset_mappings")
    op.drop_table("asset_mappings")
    op.drop_table("worker_heartbeats")
    op.drop_index("ix_runs_started", table_name="runs")
    op.drop_index("ix_runs_source_started", table_name="runs")
    op.drop_index(
        "ix_runs_running", table_name="runs", postgresql_where=sa.text("status = 'running'")
    )
    op.drop_table("runs")
    op.drop_table("record_counts")
    op.drop_index(op.f("ix_raw_rss_entries_run_id"), table_name="raw_rss_entries")
    op.drop_table("raw_rss_entries")
    op.drop_index(op.f("ix_raw_csv_rows_run_id"), table_name="raw_csv_rows")
    op.drop_table("raw_csv_rows")
    op.drop_index(op.f("ix_raw_coinpaprika_tickers_run_id"), table_name="raw_coinpaprika_tickers")
    op.drop_table("raw_coinpaprika_tickers")
    op.drop_index(op.f("ix_raw_coingecko_markets_run_id"), table_name="raw_coingecko_markets")
    op.drop_table("raw_coingecko_markets")
    op.drop_table("checkpoints")
    op.drop_index(op.f("ix_assets_symbol_normalized_name"), table_name="assets")
    op.drop_index(op.f("ix_assets_symbol"), table_name="assets")
    op.drop_table("assets")
