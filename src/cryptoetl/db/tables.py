"""Table metadata. Alembic migrations own the live schema; a test proves both agree.

Naming: ``raw_*`` tables keep payloads as received; the normalized records are
``market_observations`` (each one an observation of a ``market_series``: venue, base, quote,
interval) and ``news_items``, sharing one id sequence; the view ``records`` shows both in one
shape for SQL users. ``assets``/``asset_mappings`` give every coin one canonical identity;
``checkpoints``, ``runs``, ``rejected_records`` and ``drift_events`` are the ETL's bookkeeping;
``market_series.observations`` and ``news_counts`` keep exact totals so the API never counts
a table per request.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

# The Alembic revision these tables describe: a worker starts at once on a database at it, and
# only otherwise reads the migration scripts (tests/integration/test_migrations.py: the head).
SCHEMA_REVISION = "0002"

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
MARKET_SOURCES = ("csv", "coinpaprika", "coingecko")
MARKET_SOURCES_SQL = "source_type IN ('csv', 'coinpaprika', 'coingecko')"
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

# One id space for every normalized record (market observation or news item), so /data can page
# through both kinds with one keyset (source_timestamp, id).
record_ids = sa.Sequence("record_id_seq", metadata=metadata, cache=1000)

# A market series: one venue's prices of one base coin in one quote currency at one interval.
# NULL quote / interval mean *unknown* (the source did not say); the unique key treats each
# unknown as one value, so rows of one file with an unknown quote still share their series.
market_series = sa.Table(
    "market_series",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("venue", sa.Text, nullable=False),
    # The source's own id for the base coin: an API's coin id, or the ticker for CSV rows.
    sa.Column("base", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("quote", sa.Text, nullable=True),
    sa.Column("interval", sa.Text, nullable=True),
    # `venue:base/quote:interval` ("?" for unknown): with a timestamp, a record's source_id.
    sa.Column(
        "key",
        sa.Text,
        sa.Computed(
            "venue || ':' || base || '/' || coalesce(quote, '?') || ':' || coalesce(interval, '?')",
            persisted=True,
        ),
        nullable=False,
    ),
    sa.Column("asset_id", sa.BigInteger, sa.ForeignKey("assets.id"), nullable=False),
    # How venue, quote and interval were found ("file name", "declared", "row spacing", ...).
    sa.Column("info", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # Kept by the store in the same transaction as every write: the exact count of the series'
    # observations and their time bounds (a batch entirely outside them is new: plain COPY).
    sa.Column("observations", sa.BigInteger, nullable=False, server_default="0"),
    _tstz("first_ts"),
    _tstz("last_ts"),
    # What every observation's API item shares, rendered once (cryptoetl.pipeline.documents).
    sa.Column("doc", sa.Text, nullable=False, server_default=""),
    _tstz("created_at", nullable=False, default_now=True),
    sa.CheckConstraint(MARKET_SOURCES_SQL, name="source_type"),
    sa.Index(
        "uq_market_series_key",
        "source_type",
        "venue",
        "base",
        sa.text("coalesce(quote, '')"),
        sa.text("coalesce(interval, '')"),
        unique=True,
    ),
    sa.Index(None, "asset_id"),
)

# Observations of market series, partitioned by source (partition pruning serves the
# `source_type` filter). Two indexes only, because every index costs each of millions of rows:
# the identity (series, timestamp) and the keyset order of /data.
market_observations = sa.Table(
    "market_observations",
    metadata,
    sa.Column("id", sa.BigInteger, server_default=record_ids.next_value(), nullable=False),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("series_id", sa.Integer, nullable=False),
    _tstz("source_timestamp", nullable=False),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("open", sa.Float, nullable=True),
    sa.Column("high", sa.Float, nullable=True),
    sa.Column("low", sa.Float, nullable=True),
    sa.Column("volume_base", sa.Float, nullable=True),
    sa.Column("volume_quote", sa.Float, nullable=True),
    sa.Column("market_cap", sa.Float, nullable=True),
    sa.Column("change_pct", sa.Float, nullable=True),
    sa.Column("rank", sa.Integer, nullable=True),
    # json, not jsonb: kept as written (compact, sorted keys), compared and served as that text.
    sa.Column("metadata", pg.JSON, nullable=True),
    _tstz("updated_at", nullable=False, default_now=True),
    sa.Index(
        "uq_market_observations_key",
        "source_type",
        "series_id",
        "source_timestamp",
        unique=True,
    ),
    sa.Index("ix_market_observations_ts_id", sa.text("source_timestamp DESC"), sa.text("id DESC")),
    postgresql_partition_by="LIST (source_type)",
)
MARKET_PARTITIONS = {source: f"market_observations_{source}" for source in MARKET_SOURCES}


def declared_here(obj: Any, name: str | None, type_: str, reflected: bool, _: Any) -> bool:
    """Alembic's ``include_object``: the partitions of market_observations (and the indexes
    they inherit) are made by the migration from the partitioned table, not declared here."""
    table = obj.table.name if type_ in ("index", "unique_constraint") else name
    return not (reflected and table in MARKET_PARTITIONS.values())


news_items = sa.Table(
    "news_items",
    metadata,
    sa.Column("id", sa.BigInteger, server_default=record_ids.next_value(), primary_key=True),
    sa.Column("source_type", sa.Text, nullable=False),
    sa.Column("source_id", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
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
    # Entries without a source time sort by ingestion time; NOT NULL keeps keyset paging simple.
    _tstz("source_timestamp", nullable=False),
    sa.Column("content_hash", pg.BYTEA, nullable=False),
    sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # The API item after its "id", rendered when written (cryptoetl.pipeline.documents).
    sa.Column("doc", sa.Text, nullable=False, server_default=""),
    sa.Column("run_id", pg.UUID(as_uuid=True), nullable=True),
    _tstz("inserted_at", nullable=False, default_now=True),
    _tstz("updated_at", nullable=False, default_now=True),
    sa.Column(
        "search_vector",
        pg.TSVECTOR,
        sa.Computed(
            "to_tsvector('english'::regconfig, title || ' ' || coalesce(summary, ''))",
            persisted=True,
        ),
        nullable=True,
    ),
    sa.UniqueConstraint("source_type", "source_id"),
    sa.CheckConstraint("source_type = 'rss'", name="source_type"),
    sa.Index("ix_news_items_ts_id", sa.text("source_timestamp DESC"), sa.text("id DESC")),
    sa.Index(
        "ix_news_items_category_ts_id",
        "category",
        sa.text("source_timestamp DESC"),
        sa.text("id DESC"),
        postgresql_where=sa.text("category IS NOT NULL"),
    ),
    sa.Index("ix_news_items_search_vector", "search_vector", postgresql_using="gin"),
    sa.Index("ix_news_items_mentioned_asset_ids", "mentioned_asset_ids", postgresql_using="gin"),
)

# Exact news totals per source (asset_id 0) and per mentioned asset, kept current by triggers on
# `news_items` in the same transaction as each write, so /data never counts the table.
news_counts = sa.Table(
    "news_counts",
    metadata,
    sa.Column("source_type", sa.Text, primary_key=True),
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
    # SHA-256 of the canonical payload: a re-read of the same bad row is not stored again.
    # NULL on rows stored before revision 0002.
    sa.Column("payload_hash", pg.BYTEA, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    _tstz("created_at", nullable=False, default_now=True),
    sa.Index(None, "run_id"),
    sa.Index("ix_rejected_records_source_created", "source_type", sa.text("created_at DESC")),
    sa.Index(
        "uq_rejected_records_key",
        "source_type",
        "source_key",
        "payload_hash",
        unique=True,
        postgresql_where=sa.text("payload_hash IS NOT NULL"),
    ),
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
