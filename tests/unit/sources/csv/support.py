"""Helpers shared by the CSV source tests: build a source, run it, pick its output apart."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from cryptoetl.config import Settings
from cryptoetl.sources.base import Batch, MarketRecord, Reject
from cryptoetl.sources.csv import CsvSource


def settings(*paths: Path | str, column_map: str = "", **limits: int) -> Settings:
    return Settings(
        database_url=None,
        api_database_url=None,
        csv_paths=tuple(str(p) for p in paths),
        csv_column_map=column_map,
        **limits,
    )


def source(*paths: Path | str, column_map: str = "", **limits: int) -> CsvSource:
    return CsvSource(settings(*paths, column_map=column_map, **limits))


async def run(
    src: CsvSource, cursor: dict[str, Any] | None = None, batch_size: int = 1000
) -> list[Batch]:
    """All batches of one run, through the async API, with the cursor JSON round-tripped
    (as the pipeline stores it in PostgreSQL)."""
    batches = [b async for b in src.batches(cursor or {}, batch_size)]
    for b in batches:
        assert b.cursor is not None
        b.cursor = msgspec.json.decode(msgspec.json.encode(b.cursor))
    return batches


def records(batches: list[Batch]) -> list[MarketRecord]:
    out = [r for b in batches for r in b.records]
    assert all(isinstance(r, MarketRecord) for r in out)
    return out  # type: ignore[return-value]


def rejects(batches: list[Batch]) -> list[Reject]:
    return [r for b in batches for r in b.rejects]


def warnings(batches: list[Batch]) -> list[str]:
    return [w for b in batches for w in b.warnings]


def by_time(recs: list[MarketRecord]) -> dict[datetime, MarketRecord]:
    """Records by timestamp (one series per file: the timestamp identifies the row)."""
    out = {r.source_timestamp: r for r in recs}
    assert len(out) == len(recs), "two records of one timestamp"
    return out


def identity(record: MarketRecord) -> tuple[object, ...]:
    """What the store keys an observation on: its series and timestamp."""
    return (
        record.source_type,
        record.venue,
        record.base_key,
        record.quote,
        record.interval,
        record.source_timestamp,
    )


def last_cursor(batches: list[Batch]) -> dict[str, Any]:
    assert batches, "expected at least one batch"
    cursor = batches[-1].cursor
    assert cursor is not None
    return cursor


def state(batches: list[Batch], path: Path) -> dict[str, Any]:
    return last_cursor(batches)["files"][str(path)]  # type: ignore[no-any-return]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def raw_rows(payload: dict[str, Any], delimiter: str = ",") -> list[list[str]]:
    """The data rows of a batch's raw payload: its ``text`` is the lines as in the file (the
    first batch's starts with the header)."""
    rows = [
        r
        for r in csv.reader(io.StringIO(payload["text"].lstrip("\ufeff")), delimiter=delimiter)
        if r
    ]
    return rows[1:] if rows and rows[0] == payload["header"] else rows
