"""Every named statement of the API's .sql files is valid against the migrated schema: each is
prepared and EXPLAINed as the API's read-only login (so its grants are checked too)."""

from __future__ import annotations

import asyncpg
import pytest

from cryptoetl.api import queries
from tests.pg import TestDatabase

NAMED = [(concern, name) for concern in queries.concerns() for name in queries.load(concern)]


def test_every_concern_has_statements() -> None:
    assert {"assets", "counts", "dashboard", "metrics", "runs", "stats", "status"} <= set(
        queries.concerns()
    )
    assert len(NAMED) >= 20


@pytest.mark.parametrize(("concern", "name"), NAMED, ids=[f"{c}.{n}" for c, n in NAMED])
async def test_statement_explains(database: TestDatabase, concern: str, name: str) -> None:
    sql = queries.load(concern)[name]
    conn = await asyncpg.connect(database.reader_url)
    try:
        statement = await conn.prepare(sql)
        nulls = [None] * len(statement.get_parameters())
        plan = await conn.fetch(f"EXPLAIN {sql}", *nulls)
    finally:
        await conn.close()
    assert plan, f"{concern}.{name}: no plan"
