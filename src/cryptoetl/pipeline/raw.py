"""Raw payloads: what each upstream sent, exactly, before any validation.

Every payload goes to its source's raw table, unique on (source key, SHA-256 of the canonical
JSON), so identical content is stored once however often it is read. Raw payloads are the
largest values a batch writes, so this module also owns the worker connections' preference for
lz4 TOAST compression.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Sequence
from typing import Any

from cryptoetl.db.tables import RAW_TABLES
from cryptoetl.sources.base import RawPayload, SourceType, canonical_json

_RAW_INSERT = """
INSERT INTO {table} (run_id, source_key, content_hash, payload)
SELECT $1::uuid, k, h, p::jsonb FROM unnest($2::text[], $3::bytea[], $4::text[]) AS t(k, h, p)
ON CONFLICT (source_key, content_hash) DO NOTHING
"""

# TOAST compression of the large values a batch writes (raw payloads: a CSV batch is one JSON
# document of a few hundred kB). lz4 compresses about 3x faster than PostgreSQL's default pglz
# for a similar size. It is a session setting of the worker's own connections (set once per
# connection, only when the server was built with lz4); readers see no difference.
_LZ4 = (
    "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings "
    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)
_lz4_connections: weakref.WeakSet[Any] = weakref.WeakSet()


async def prefer_lz4(driver: Any) -> None:
    if driver not in _lz4_connections:
        await driver.fetchval(_LZ4)
        _lz4_connections.add(driver)


def _affected(status: str) -> int:
    """The row count of a command tag such as ``INSERT 0 42``."""
    return int(status.rsplit(" ", 1)[-1])


async def store_raw(
    driver: Any, source: SourceType, run_id: uuid.UUID, raw: Sequence[RawPayload]
) -> int:
    """Insert payloads; identical content for the same key is stored once."""
    if not raw:
        return 0
    keys: list[str] = []
    hashes: list[bytes] = []
    payloads: list[str] = []
    for item in raw:
        # One canonical encoding gives the content hash and the text PostgreSQL parses as jsonb.
        encoded, digest = canonical_json(item.payload)
        keys.append(item.source_key)
        hashes.append(digest)
        payloads.append(encoded.decode())
    sql = _RAW_INSERT.format(table=RAW_TABLES[source].name)
    return _affected(await driver.execute(sql, run_id, keys, hashes, payloads))
