"""Records that are not plain rows: blank lines, placeholders, wrong widths, broken quotes.

The reader's hot loop hands every record of another width than the header, or of more than one
line, to :func:`odd_record`; csv.reader errors become :class:`Broken` too. A broken record
(csv failed, or a quoted field spans more than ``CSV_MAX_RECORD_LINES`` lines or more than
``CSV_MAX_LINE_BYTES`` bytes) never swallows good rows: :func:`recover` rejects the record's
first line and restarts reading on the next one, with the lines the record had swallowed
checked one by one (a line that leaves a quote open is rejected by itself). Every line is
parsed at most twice, so even a file of unterminated quotes costs linear time.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import Final, NamedTuple

from cryptoetl.sources.csv.stream import Limits, LineFeed, echo, echo_cells, read_line_at


class Rejected(NamedTuple):
    raw: list[str]  # the record's cells for the batch's raw payload
    reason: str
    payload: dict[str, object]
    number: int  # its line


class Broken(NamedTuple):
    reason: str


BLANK: Final = Rejected([], "", {}, 0)  # a blank line: skipped


def odd_record(
    row: list[str],
    feed: LineFeed,
    *,
    number: int,
    taken: int,
    span: int,
    needed: int,
    header: list[str],
    limits: Limits,
) -> Rejected | Broken | None:
    """None to parse the record, :data:`BLANK` to skip it, a reject, or a broken record.

    ``number`` is its first line, ``taken`` its last feed line, ``span`` its lines, ``needed``
    the cells a row must have.
    """
    if span > limits.max_record_lines:
        return Broken(
            f"a quoted field spans {span} lines (limit CSV_MAX_RECORD_LINES="
            f"{limits.max_record_lines}): unterminated quote?"
        )
    if not row:
        note = feed.notes.pop(taken, None)
        if note is None:
            return BLANK
        reason, text = note
        return Rejected([text], reason, {"line": number, "text": text}, number)
    if len(row) > limits.max_fields:
        reason = f"row has {len(row):,} fields (limit CSV_MAX_FIELDS={limits.max_fields:,})"
        return Rejected(row, reason, {"line": number, "row": echo_cells(row)}, number)
    if len(row) < needed:
        reason = f"row has {len(row)} cells, the header has {len(header)}"
        return Rejected(row, reason, {"line": number, "row": row, "header": header}, number)
    return None


def csv_error_reason(exc: csv.Error, limits: Limits) -> str:
    if "field larger than field limit" in str(exc):
        return (
            f"a field runs past {limits.max_line_bytes:,} bytes (CSV_MAX_LINE_BYTES): "
            "unterminated quote?"
        )
    return f"malformed CSV: {echo(str(exc))}"


def recover(
    feed: LineFeed,
    new_feed: Callable[[int, int], LineFeed],
    *,
    base_line: int,
    start: int,
    taken: int,
    reason: str,
) -> tuple[LineFeed, int, Rejected]:
    """After a broken record (feed lines ``start + 1`` to ``taken``): a feed from the record's
    second line that checks the lines it swallowed one by one (``new_feed(offset,
    sanitize_until)``), its base line, and the reject of the record's first line."""
    number = base_line + start + 1
    swallowed_end = feed.position()
    try:
        begin, end = feed.offset_after(start), feed.offset_after(start + 1)
    except LookupError:  # too far back to rewind: the record is rejected whole
        payload: dict[str, object] = {"line": number, "lines": taken - start}
        rejected = Rejected([], f"{reason} ({taken - start} lines)", payload, number)
        return new_feed(swallowed_end, 0), base_line + taken, rejected
    text = read_line_at(feed.fd, begin, end, feed.limits.max_line_bytes)
    payload = {"line": number, "text": echo(text, 1000)}
    return new_feed(end, swallowed_end), number, Rejected([text], reason, payload, number)
