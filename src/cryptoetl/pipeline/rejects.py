"""What a batch could not use as it is: rejected records and schema drift events.

A reject is a record the source could not validate, stored with its reason once per source, key
and payload (a re-read of the same bad row at the same place does not multiply it). A drift
event is a change in an upstream's shape, stored once per run, field and change: the runner
logs only the ones that are new in its run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptoetl.db.tables import drift_events
from cryptoetl.sources.base import DriftEvent, Reject, SourceType, canonical_json

_REJECT_INSERT = """
INSERT INTO rejected_records (source_type, run_id, source_key, payload, payload_hash, reason)
SELECT $1::text, $2::uuid, k, p::jsonb, h, r
FROM unnest($3::text[], $4::text[], $5::bytea[], $6::text[]) AS t(k, p, h, r)
ON CONFLICT (source_type, source_key, payload_hash) WHERE payload_hash IS NOT NULL DO NOTHING
"""


async def store_rejects(
    driver: Any, source: SourceType, run_id: uuid.UUID, rejects: Sequence[Reject]
) -> int:
    """Store rejects; the same bad payload at the same key is stored once (a re-read of a file
    does not multiply them). Returns how many this batch rejected, stored before or not."""
    if rejects:
        keys, payloads, hashes, reasons = [], [], [], []
        for r in rejects:
            encoded, digest = canonical_json(r.payload)
            keys.append(r.source_key)
            payloads.append(encoded.decode())
            hashes.append(digest)
            reasons.append(r.reason)
        await driver.execute(_REJECT_INSERT, source, run_id, keys, payloads, hashes, reasons)
    return len(rejects)


async def store_drift(
    conn: AsyncConnection, source: SourceType, run_id: uuid.UUID, events: Sequence[DriftEvent]
) -> list[DriftEvent]:
    """Store drift events once per run and field; returns the ones that were new this run."""
    if not events:
        return []
    rows = [
        {
            "source_type": source,
            "run_id": run_id,
            **msgspec.structs.asdict(e),
            "sample": msgspec.to_builtins(e.sample),
        }
        for e in events
    ]
    stmt = (
        insert(drift_events)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["run_id", "field", "change"])
        .returning(drift_events.c.field, drift_events.c.change)
    )
    new = {(f, c) for f, c in (await conn.execute(stmt)).all()}
    return [e for e in events if (e.field, e.change) in new]
