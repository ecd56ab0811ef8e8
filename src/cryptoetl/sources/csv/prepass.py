"""What is learned about a file before its rows are parsed: header, day/month order, series.

* The header: declared with ``header=`` (a first line equal to it is skipped), else the first
  of up to 10 lines that looks like one (a date column and a value column); the lines above it
  are the banner. A line over ``CSV_MAX_LINE_BYTES`` or a row over ``CSV_MAX_FIELDS`` there
  rejects the file (a header of millions of columns is never echoed whole). A file whose first
  line looks like data is told how to declare a header.
* The day/month order (:mod:`.dates`): a streaming pre-pass over the date columns, run at the
  first ambiguous date, combined with what earlier reads of the file saw.
* The series (:mod:`.series`): from the file name, banner and layout, and the timestamps of the
  first :data:`.series.SAMPLE_ROWS` rows, read by an independent feed.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Final, NamedTuple

from cryptoetl.sources.base import SourceError
from cryptoetl.sources.csv.checkpoint import FileState
from cryptoetl.sources.csv.dates import (
    DateParser,
    FileDateOrder,
    decide_date_order,
    scan_day_month,
)
from cryptoetl.sources.csv.layout import CsvLayout, looks_like_header, norm_header
from cryptoetl.sources.csv.numbers import parse_number
from cryptoetl.sources.csv.options import FileOptions
from cryptoetl.sources.csv.rows import key_columns, timestamp_getter
from cryptoetl.sources.csv.series import (
    SAMPLE_ROWS,
    SeriesFacts,
    candle_interval,
    decide_series,
    gaps_of,
    interval_from_gaps,
)
from cryptoetl.sources.csv.stream import Limits, LineFeed, echo, echo_cells
from cryptoetl.sources.csv.symbols import venue_from_text

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

PREAMBLE_ROWS: Final = 10  # lines tolerated before the header (banners, URLs)
NewFeed = Callable[[int], LineFeed]  # an independent feed of the file from a byte offset


class Restart(Exception):
    """New rows changed the file's day/month order: read it again from the start."""


class Sample(NamedTuple):
    per_series: dict[tuple[str, ...], list[datetime]]
    durations_ms: list[int]  # close - open of candles
    date_cells: list[str]


def tolerant(rows: CsvReader) -> Iterator[list[str]]:
    """Rows of a pre-pass; a malformed line is skipped (the main pass rejects it)."""
    while True:
        try:
            yield next(rows)
        except StopIteration:
            return
        except csv.Error:
            continue


def find_header(
    path: str,
    feed: LineFeed,
    reader: CsvReader,
    options: FileOptions,
    limits: Limits,
    new_feed: NewFeed,
) -> tuple[list[str], list[str]]:
    """The header row and the banner lines above it; ``reader`` is left after the header."""
    declared = options.header
    if declared is not None:
        first = next(csv.reader(new_feed(0), delimiter=feed.delimiter), None)
        if first is not None and list(map(norm_header, first)) == list(map(norm_header, declared)):
            next(reader)  # the file has the declared header after all
        return list(declared), []
    banner: list[str] = []
    first_row: list[str] | None = None
    for _ in range(PREAMBLE_ROWS):
        try:
            row = next(reader, None)
        except csv.Error:
            continue  # a malformed banner line
        if row is None:
            break
        if not row:
            note = feed.notes.get(reader.line_num)
            if note is not None:
                raise SourceError(f"{path}: line {reader.line_num}: {note[0]}")
            continue
        if len(row) > limits.max_fields:
            raise SourceError(
                f"{path}: line {reader.line_num} has {len(row):,} fields (limit "
                f"CSV_MAX_FIELDS={limits.max_fields:,}): {echo_cells(row)}"
            )
        if looks_like_header(row, options.columns):
            return row, banner
        banner.append(echo(" ".join(row), 200))
        first_row = first_row or row
    raise SourceError(
        f"{path}: no recognisable date and price/value columns in the header "
        f"{echo_cells(first_row or [])}{_headerless_hint(path, first_row)}"
    )


def _headerless_hint(path: str, row: list[str] | None) -> str:
    if not row or len(row) < 2:
        return ""
    try:
        DateParser().parse(row[0])
        if all(parse_number(cell) is None for cell in row[1:]):
            return ""
    except ValueError:
        return ""
    names = "|".join(["Date", "Price", *(f"Column{i}" for i in range(3, len(row) + 1))])
    file_name = path.rsplit("/", 1)[-1]
    return (
        f"; it looks like data: a headerless file needs CSV_COLUMN_MAP={file_name}:header={names}"
    )


def date_parser(
    layout: CsvLayout,
    options: FileOptions,
    state: FileState,
    prev: FileState | None,
    start: int,
    new_feed: NewFeed,
    warnings: list[str],
) -> DateParser:
    """The file's date parser; its day/month order goes to ``state`` once decided."""
    forced = options.date_order
    if forced is not None:
        state.date_order, state.date_order_from = forced, "config"
        return DateParser(forced, unix_column=layout.date_is_unix)
    prior_order = prev.date_order if prev is not None else None
    prior = prev.dm_evidence if prev is not None and len(prev.dm_evidence) == 2 else [False] * 2
    prior_sep = prev.date_sep if prev is not None else None
    columns = tuple(c for c in (layout.date, layout.date_fallback) if c >= 0)

    def decide() -> FileDateOrder:
        # Runs once, at the first a/b/y date of this read: the rest of the file (from where
        # this read started) is scanned, and combined with what earlier runs saw.
        rows = csv.reader(new_feed(start), delimiter=state.delimiter)
        first, second, sep = scan_day_month(tolerant(rows), columns)
        first, second, sep = first or prior[0], second or prior[1], prior_sep or sep
        order = decide_date_order(first, second, sep)
        if prior_order is not None and order != prior_order:
            raise Restart(
                f"new rows change the day/month order from {prior_order} to {order}; "
                "re-reading the whole file"
            )
        state.dm_evidence, state.date_sep, state.date_order = [first, second], sep, order
        state.date_order_from = "data" if first or second else "default"
        if order == "mixed":
            warnings.append(
                "the file mixes day-first and month-first dates; rows with an ambiguous "
                "day/month are rejected"
            )
        elif not (first or second):
            warnings.append(
                f"no date decides the day/month order; using "
                f"{'month' if order == 'mdy' else 'day'}-first for {sep!r}-separated dates"
            )
        return order

    return DateParser(None, decide, unix_column=layout.date_is_unix)


def sample_rows(layout: CsvLayout, dates: DateParser, rows: Iterable[list[str]]) -> Sample:
    """Timestamps (per series), candle lengths and date cells of the first ``rows``."""
    timestamp = timestamp_getter(layout, dates)
    columns = key_columns(layout)
    sample = Sample({}, [], [])
    for row in islice(rows, SAMPLE_ROWS):
        if len(row) < layout.needed:
            continue
        try:
            when = timestamp(row)
            if layout.close_time >= 0:
                close = dates.parse(row[layout.close_time])
                sample.durations_ms.append(round((close - when).total_seconds() * 1000))
        except ValueError:
            continue
        sample.date_cells.append(row[layout.date])
        sample.per_series.setdefault(tuple(row[c] for c in columns), []).append(when)
    return sample


def detect_series(
    file_name: str, options: FileOptions, layout: CsvLayout, sample: Sample, banner: list[str]
) -> tuple[SeriesFacts, list[str]]:
    """The file's series facts from its name, banner, layout and first rows; warnings."""
    gaps = [gap for stamps in sample.per_series.values() for gap in gaps_of(sorted(stamps))]
    durations = sample.durations_ms
    facts, warnings = decide_series(
        file_name=file_name,
        declared=options.declared,
        banner_venue=next(filter(None, map(venue_from_text, banner)), None),
        layout_venue=layout.venue,
        header_quote=layout.header_quote,
        candle=candle_interval(durations) if durations else None,
        spacing=interval_from_gaps(gaps),
    )
    if facts.interval is None and sample.date_cells:
        warnings.append(
            f"the interval of the rows is {facts.info['interval']}: stored without one; "
            f"declare it with CSV_COLUMN_MAP={file_name}:interval=<1h|1d|...>"
        )
    return facts, warnings
