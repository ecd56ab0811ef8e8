"""The loader of the API's named SQL blocks."""

from __future__ import annotations

import pytest

from cryptoetl.api.queries import QueryFileError, load, parse


def test_blocks_are_named_described_and_trimmed() -> None:
    text = """-- A file's own comment.

-- first --
-- What it returns ($1 a parameter).
SELECT 1
-- an inline comment stays
WHERE true;

-- second --
SELECT 2;
"""
    assert parse(text, "x.sql") == {
        "first": "SELECT 1\n-- an inline comment stays\nWHERE true",
        "second": "SELECT 2",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1;\n-- a --\nSELECT 2;", "x.sql:1: SQL before the first"),
        ("-- a --\nSELECT 1;\n-- a --\nSELECT 2;", "x.sql:3: 'a' is defined twice"),
        ("-- a --\n-- only a description\n-- b --\nSELECT 2;", "no statement under a"),
    ],
)
def test_malformed_files_name_the_place(text: str, message: str) -> None:
    with pytest.raises(QueryFileError, match=message):
        parse(text, "x.sql")


def test_the_shipped_files_load() -> None:
    assert load("runs")["recent"].startswith("SELECT")
    with pytest.raises(KeyError):
        load("runs")["no_such_statement"]
