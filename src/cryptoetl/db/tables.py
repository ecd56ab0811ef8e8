"""Table metadata. Alembic migrations own the live schema; a test proves both agree.

Naming: ``raw_*`` tables keep payloads as received; ``records`` is the one normalized table
(market and news rows); ``assets``/``asset_mappings`` give every coin one canonical identity;
``checkpoints``, ``runs``, ``rejected_records`` and ``drift_events`` are the ETL's bookkeeping;
``record_counts`` keeps exact per-group totals so the API never counts the table per request.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

SOURCE_TYPES_SQL = "source_type IN ('csv', 'coinpaprika', 'coingecko', 'rss')"
NOW = sa.text("now()")


def _tstz(name: str, *, nullable: bool = True, default_now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=NOW if default_now else None,
    )


def _raw_table(name: str) -> sa.Table:
    """One raw table per source: payload as received, deduplicated by content hash."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("run_id", pg.UUID(as_uuid=True), nullable=False),
        _tstz("fetched_at", nullable=False, default_now=True),
        sa.Column("source_key", sa.Text, nullable=False),
        sa.Column("content_hash", pg.BYTEA, nullable=False),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.UniqueConstraint("source_key", "content_hash"),
        sa.Index(None, "run_id"),
    )


raw_csv_rows = _raw_table("raw_csv_rows")
raw_coinpaprika_tickers = _raw_table("raw_coinpaprika_tickers")
raw_coingecko_markets = _raw_table("raw_coingecko_markets")
raw_rss_entries = _raw_table("raw_rss_entries")

RAW_TABLES = {
    "csv": raw_csv_rows,
    "coinpaprika": raw_coinpaprika_tickers,
    "coingecko": raw_coingecko_markets,
    "rss": raw_rss_entries,
}

assets = sa.Table(
    "assets",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("slug", sa.Text, nullable=False, unique=True),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("normalized_name", sa.Text, nullable=False),
    _tstz("created_at", nullable=False, default_now=True),
    sa.Index(None, "symbol"),
    sa.Index(None, "symbol", "normalized_name"),
)

asset_mappings = sa.Table(
    "asset_mappings",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("source_id", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("match_method", sa.Text, nullable=False),
    sa.Column("confidence", sa.Numeric(4, 3), nullable=False),
    _tstz("created_at", nullable=False, default_now=True),
    sa.UniqueConstraint("source_type", "source_id"),
    sa.CheckConstraint(SOURCE_TYPES_SQL, name="source_type"),
    sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
    sa.Index(None, "asset_id"),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("source_id", sa.Text, nullable=False),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=True),
    sa.Column("symbol", sa.Text, nullable=True),
    sa.Column("price_usd", sa.Float, nullable=True),
    sa.Column("market_cap_usd", sa.Float, nullable=True),
    sa.Column("volume_24h_usd", sa.Float, nullable=True),
    sa.Column("change_24h_pct", sa.Float, nullable=True),
    sa.Column("rank", sa.Integer, nullable=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("author", sa.Text, nullable=True),
    sa.Column("category", sa.Text, nullable=True),
    sa.Column("tags", pg.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
    sa.Column(
        "mentioned_asset_ids",
        pg.ARRAY(sa.BigInteger),
        nullable=False,
        server_default=sa.text("'{}'"),
    ),
    # Rows without a source time sort by ingestion time; NOT NULL keeps keyset pagination simple.
    _tstz("source_timestamp", nullable=False),
    sa.Column("content_hash", pg.BYTEA, nullable=False),
    sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("run_id", pg.UUID(as_uuid=True), nullable=True),
    _tstz("inserted_at", nullable=False, default_now=True),
    _tstz("updated_at", nullable=False, default_now=True),
    sa.Column(
        "search_vector",
        pg.TSVECTOR,
        # NULL when there is no text (CSV observations), so the partial GIN index skips them.
        sa.Computed(
            "CASE WHEN title IS NULL AND summary IS NULL THEN NULL "
            "ELSE to_tsvector('english'::regconfig, "
            "coalesce(title, '') || ' ' || coalesce(summary, '')) END",
            persisted=True,
        ),
        nullable=True,
    ),
    sa.UniqueConstraint("source_type", "source_id"),
    sa.CheckConstraint("kind IN ('market', 'news')", name="kind"),
    sa.CheckConstraint(SOURCE_TYPES_SQL, name="source_type"),
    # Keyset pagination: newest first, id breaks ties.
    sa.Index("ix_records_ts_id", sa.text("source_timestamp DESC"), sa.text("id DESC")),
    sa.Index(
        "ix_records_source_ts_id",
        "source_type",
        sa.text("source_timestamp DESC"),
        sa.text("id DESC"),
    ),
    # Partial indexes keep the bulk (market observations) cheap to write: news is rare next to
    # market rows, so `kind = 'market'` is served by ix_records_ts_id and news by its own index.
    sa.Index(
        "ix_records_news_ts_id",
        sa.text("source_timestamp DESC"),
        sa.text("id DESC"),
        postgresql_where=sa.text("kind = 'news'"),
    ),
    sa.Index(
        "ix_records_asset_ts_id",
        "asset_id",
        sa.text("source_timestamp DESC"),
        sa.text("id DESC"),
        postgresql_where=sa.text("asset_id IS NOT NULL"),
    ),
    sa.Index(
        "ix_records_category_ts_id",
        "category",
        sa.text("source_timestamp DESC"),
        sa.text("id DESC"),
        postgresql_where=sa.text("category IS NOT NULL"),
    ),
    sa.Index(
        "ix_records_search_vector",
        "search_vector",
        postgresql_using="gin",
        postgresql_where=sa.text("search_vector IS NOT NULL"),
    ),
    sa.Index(
        "ix_records_mentioned_asset_ids",
        "mentioned_asset_ids",
        postgresql_using="gin",
        postgresql_where=sa.text("kind = 'news'"),
    ),
)

# Exact totals per (source_type, kind, asset), kept current by a trigger on `records` in the
# same transaction as each write, so `total_records` never needs COUNT(*) over the table.
record_counts = sa.Table(
    "record_counts",
    metadata,
    sa.Column("source_type", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    # 0 stands for "no asset" so the column can be part of the primary key.
    sa.Column("asset_id", sa.BigInteger, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("source_type", sa.Text, primary_key=True),
    sa.Column("cursor", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("status", sa.Text, nullable=False, server_default="never_run"),
    sa.Column("last_run_id", pg.UUID(as_uuid=True), nullable=True),
    _tstz("last_success_at"),
    _tstz("last_failure_at"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("records_total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_run_processed", sa.BigInteger, nullable=False, server_default="0"),
    _tstz("updated_at", nullable=False, default_now=True),
    sa.CheckConstraint(SOURCE_TYPES_SQL, name="source_type"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("source_type", sa.Text, nullable=False),
    _tstz("started_at", nullable=False, default_now=True),
    _tstz("finished_at"),
    _tstz("heartbeat_at", nullable=False, default_now=True),
    sa.Column("status", sa.Text, nullable=False, server_default="running"),
    sa.Column("worker_id", sa.Text, nullable=False),
    sa.Column("processed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("inserted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("unchanged", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("drift_events", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("raw_stored", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("warnings", pg.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("error", sa.Text, nullable=True),
    sa.CheckConstraint("status IN ('running', 'success', 'failed', 'interrupted')", name="status"),
    sa.CheckConstraint(SOURCE_TYPES_SQL, name="source_type"),
    sa.Index("ix_runs_source_started", "source_type", sa.text("started_at DESC")),
    sa.Index("ix_runs_started", sa.text("started_at DESC")),
    sa.Index(
        "ix_runs_running",
        "status",
        postgresql_where=sa.text("status = 'running'"),
    ),
)

rejected_records = sa.Table(
    "rejected_records",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("run_id", pg.UUID(as_uuid=True), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("source_key", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    _tstz("created_at", nullable=False, default_now=True),
    sa.Index(None, "run_id"),
    sa.Index("ix_rejected_records_source_created", "source_type", sa.text("created_at DESC")),
)

drift_events = sa.Table(
    "drift_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("run_id", pg.UUID(as_uuid=True), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("field", sa.Text, nullable=False),
    sa.Column("change", sa.Text, nullable=False),
    sa.Column("expected_type", sa.Text, nullable=True),
    sa.Column("observed_type", sa.Text, nullable=True),
    sa.Column("candidate_field", sa.Text, nullable=True),
    sa.Column("similarity", sa.Float, nullable=True),
    sa.Column("sample", pg.JSONB, nullable=True),
    _tstz("created_at", nullable=False, default_now=True),
    sa.UniqueConstraint("run_id", "field", "change"),
    sa.CheckConstraint("change IN ('added', 'removed', 'type_changed')", name="change"),
    sa.Index("ix_drift_events_source_created", "source_type", sa.text("created_at DESC")),
)

# Liveness of worker processes (read by `cryptoetl worker --check` and /health).
worker_heartbeats = sa.Table(
    "worker_heartbeats",
    metadata,
    sa.Column("worker_id", sa.Text, primary_key=True),
    _tstz("started_at", nullable=False, default_now=True),
    _tstz("heartbeat_at", nullable=False, default_now=True),
)
