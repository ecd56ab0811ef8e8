"""The API's static SQL, read from ``cryptoetl/api/sql/<concern>.sql`` (one file per concern).

A file holds named blocks, each a header line ``-- name --``, comment lines saying what the
statement returns and what its parameters are, then the statement::

    -- recent --
    -- The newest runs of every source ($1 how many).
    SELECT ...

Modules bind their statements once, at import (``RECENT = load("runs")["recent"]``), so a
misspelt name fails when the module loads, and ``tests/integration/api/test_queries.py`` runs
``EXPLAIN`` on every statement of every file against the migrated schema. SQL whose text is
derived from Python (the ``/data`` builder, the upsert) is not here.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_HEADER = re.compile(r"-- ([a-z][a-z0-9_]*) --")


class QueryFileError(ValueError):
    """A ``.sql`` file that does not follow the block format (names the file and line)."""


def parse(text: str, origin: str) -> dict[str, str]:
    """The named statements of one file's text, in file order."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.fullmatch(line.strip())
        if header:
            name = header.group(1)
            if name in blocks:
                raise QueryFileError(f"{origin}:{number}: {name!r} is defined twice")
            current = blocks[name] = []
        elif current is not None:
            if current or not line.startswith("--"):  # the description is not part of the SQL
                current.append(line)
        elif line.strip() and not line.startswith("--"):
            raise QueryFileError(f"{origin}:{number}: SQL before the first '-- name --' header")
    statements = {
        name: "\n".join(lines).strip().rstrip(";").strip() for name, lines in blocks.items()
    }
    empty = [name for name, sql in statements.items() if not sql]
    if empty:
        raise QueryFileError(f"{origin}: no statement under {', '.join(empty)}")
    return statements


@functools.cache
def load(concern: str) -> dict[str, str]:
    """The statements of ``sql/<concern>.sql`` by name."""
    path = resources.files("cryptoetl.api").joinpath("sql", f"{concern}.sql")
    return parse(path.read_text(encoding="utf-8"), f"sql/{concern}.sql")


def concerns() -> list[str]:
    """Every ``.sql`` file shipped with the API, by concern name."""
    folder = resources.files("cryptoetl.api").joinpath("sql")
    return sorted(p.name.removesuffix(".sql") for p in folder.iterdir() if p.name.endswith(".sql"))
