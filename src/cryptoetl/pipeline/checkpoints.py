"""A source's checkpoint: where its next run starts, and how its last run ended.

The cursor is committed with every batch, in the batch's own transaction (:func:`save_cursor`,
from :meth:`cryptoetl.pipeline.store.Writer.write_batch`), so it never gets ahead of the rows it
covers: a run stopped anywhere resumes after its last committed batch (:func:`read_cursor`).
When a run ends, :func:`record_outcome` writes its status, error and the source's exact record
count into the same row.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptoetl.db.tables import checkpoints, market_series, news_counts
from cryptoetl.pipeline.runs import RunOutcome
from cryptoetl.sources.base import SourceType

_json = msgspec.json.Encoder()

# The per-batch bookkeeping (this cursor, the run's counters in runs.py) runs once per batch:
# prepared asyncpg statements, not SQLAlchemy constructs compiled each time (that was most of a
# batch's fixed cost).
_SAVE_CURSOR = """
INSERT INTO checkpoints (source_type, cursor, status, last_run_id)
VALUES ($1::text, $2::text::jsonb, 'running', $3::uuid)
ON CONFLICT (source_type) DO UPDATE SET cursor = excluded.cursor,
    last_run_id = excluded.last_run_id, updated_at = now()
"""


async def save_cursor(
    driver: Any, source: SourceType, run_id: uuid.UUID, cursor: dict[str, Any]
) -> None:
    await driver.execute(_SAVE_CURSOR, source, _json.encode(cursor).decode(), run_id)


async def read_cursor(conn: AsyncConnection, source: SourceType) -> dict[str, Any]:
    """The cursor of ``source``'s last committed batch; empty before its first."""
    cursor = await conn.scalar(
        sa.select(checkpoints.c.cursor).where(checkpoints.c.source_type == source)
    )
    return dict(cursor or {})


def _records_of(source: SourceType) -> Any:
    """The exact number of a source's normalized records (observations or news items)."""
    observations = sa.select(sa.func.coalesce(sa.func.sum(market_series.c.observations), 0)).where(
        market_series.c.source_type == source
    )
    items = sa.select(sa.func.coalesce(sa.func.sum(news_counts.c.n), 0)).where(
        news_counts.c.source_type == source, news_counts.c.asset_id == 0
    )
    return observations.scalar_subquery() + items.scalar_subquery()


async def record_outcome(conn: Any, outcome: RunOutcome) -> None:
    """How the run of ``outcome`` ended, and the source's record count after it."""
    total = _records_of(outcome.source)
    values: dict[str, Any] = {
        "status": outcome.status,
        "last_run_id": outcome.run_id,
        "records_total": total,
        "last_run_processed": outcome.counts.processed,
        "updated_at": sa.func.now(),
    }
    if outcome.status == "success":
        values |= {"last_success_at": sa.func.now(), "last_error": None}
    else:
        values |= {"last_failure_at": sa.func.now(), "last_error": outcome.error}
    stmt = insert(checkpoints).values(source_type=outcome.source, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["source_type"], set_=values))
