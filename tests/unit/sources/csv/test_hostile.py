"""Hostile inputs (issue 14): no file can block the source, blow up memory, or hide good rows.

Each test feeds one hostile file next to a good one and asserts the recorded reason, that the
good file is read whole, and that the parse stayed within a memory bound (tracemalloc peak)
and a generous time bound (a hang or a quadratic blow-up fails it; a slow machine does not).
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cryptoetl.sources.base import MarketRecord, Reject
from cryptoetl.sources.csv import source as source_module

from .support import source, write

GOOD_ROWS = 200
HANG_BOUND_S = 30.0


def good_file(tmp_path: Path) -> Path:
    body = "".join(f"2021-01-01 {h % 24:02d}:{h // 24:02d}:00,{h + 1}\n" for h in range(GOOD_ROWS))
    return write(tmp_path / "zz_btc_usd.csv", "Date,Close\n" + body)


class Outcome(msgspec.Struct):
    records: list[MarketRecord]
    rejects: list[Reject]
    warnings: list[str]
    cursor: dict[str, Any]
    peak_bytes: int
    seconds: float


@contextmanager
def measured() -> Iterator[list[float]]:
    tracemalloc.start()
    started = time.perf_counter()
    result: list[float] = []
    try:
        yield result
    finally:
        result.extend([tracemalloc.get_traced_memory()[1], time.perf_counter() - started])
        tracemalloc.stop()


def parse(*paths: Path, cursor: dict[str, Any] | None = None, **limits: int) -> Outcome:
    """Run the source's synchronous core as the pipeline does: batch by batch, keeping only
    what the test checks (records of the good file are few)."""
    src = source(*paths, **limits)
    records: list[MarketRecord] = []
    rejects: list[Reject] = []
    warnings: list[str] = []
    start = msgspec.json.decode(msgspec.json.encode(cursor or {}))
    cursor = start
    with measured() as stats:
        for batch in src.iter_batches(start, 5000):
            records += [r for r in batch.records if isinstance(r, MarketRecord)]
            rejects += batch.rejects
            warnings += batch.warnings
            cursor = batch.cursor or cursor
    peak, seconds = stats
    return Outcome(records, rejects, warnings, cursor, int(peak), seconds)


def assert_good_file_whole(outcome: Outcome, good: Path) -> None:
    mine = [r for r in outcome.records if r.venue == "file:zz_btc_usd"]
    assert len(mine) == GOOD_ROWS
    assert outcome.cursor["files"][str(good)]["eof"]


# ---------------------------------------------------------------------------------------------
# 14.5: a file that could block or hang the source
# ---------------------------------------------------------------------------------------------


def test_a_fifo_swapped_in_after_discovery_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = good_file(tmp_path)
    fifo = tmp_path / "a_prices.csv"
    os.mkfifo(fifo)  # no writer will ever come: a blocking open() would wait forever
    # Discovery saw a regular file here; by the time it is opened, it is a FIFO.
    monkeypatch.setattr(source_module, "resolve_paths", lambda _: ([str(fifo), str(good)], []))
    done: list[Outcome] = []
    reader = threading.Thread(target=lambda: done.append(parse(fifo, good)), daemon=True)
    reader.start()
    reader.join(HANG_BOUND_S)
    assert not reader.is_alive(), "the CSV source blocked on a FIFO"
    (outcome,) = done
    (reject,) = outcome.rejects
    assert reject.source_key == f"{fifo}:0"
    assert "not a regular file (a FIFO)" in reject.reason
    assert_good_file_whole(outcome, good)


def test_a_header_of_millions_of_columns(tmp_path: Path) -> None:
    good = good_file(tmp_path)
    wide = tmp_path / "a_wide.csv"
    header = ",".join(f"c{i}" for i in range(2_000_000)) + "\n"
    wide.write_text(header + "2021-01-01,1\n")
    assert len(header) > 15_000_000
    outcome = parse(wide, good)
    (reject,) = outcome.rejects
    assert reject.source_key == f"{wide}:0"
    expected = f"line 1: line is {len(header):,} bytes long (limit CSV_MAX_LINE_BYTES=65,536)"
    assert expected in reject.reason
    # Nothing echoes it whole: the reject, the checkpoint, the warnings stay small ...
    assert len(msgspec.json.encode(reject)) < 2_000
    assert len(msgspec.json.encode(outcome.cursor["files"][str(wide)])) < 2_000
    assert max(len(w) for w in outcome.warnings) < 2_000
    # ... and so does the parse itself: the line was never held in memory.
    assert outcome.peak_bytes < 8_000_000
    assert outcome.seconds < HANG_BOUND_S
    assert_good_file_whole(outcome, good)
    # An unchanged later run costs one stat per file.
    again = list(source(wide, good).iter_batches(outcome.cursor, 5000))
    assert again == []


def test_a_header_wider_than_the_field_limit(tmp_path: Path) -> None:
    good = good_file(tmp_path)
    wide = write(tmp_path / "a_wide.csv", "Date," + ",".join(f"c{i}" for i in range(3000)) + "\n")
    outcome = parse(wide, good)
    (reject,) = outcome.rejects
    assert "line 1 has 3,001 fields (limit CSV_MAX_FIELDS=512)" in reject.reason
    assert len(reject.reason) < 2_000
    assert_good_file_whole(outcome, good)


def test_pathological_data_lines_are_capped(tmp_path: Path) -> None:
    good = good_file(tmp_path)
    bad = tmp_path / "a_btc.csv"
    with bad.open("w") as f:
        f.write("Date,Close\n2021-01-01,1\n")
        f.write("2021-01-02," + "7" * 50_000_000 + "\n")  # one 50 MB line
        f.write("2021-01-03," + ",".join(["3"] * 20_000) + "\n")  # 20,001 fields
        f.write("2021-01-04,4\n")
    outcome = parse(bad, good, csv_max_line_bytes=1 << 20, csv_max_fields=1000)
    reasons = {r.source_key: r.reason for r in outcome.rejects}
    assert reasons == {
        f"{bad}:3": "line is 50,000,012 bytes long (limit CSV_MAX_LINE_BYTES=1,048,576)",
        f"{bad}:4": "row has 20,001 fields (limit CSV_MAX_FIELDS=1,000)",
    }
    payloads = {r.source_key: r.payload for r in outcome.rejects}
    assert payloads[f"{bad}:3"] == {"line": 3, "text": "2021-01-02," + "7" * 89}
    assert len(msgspec.json.encode(payloads[f"{bad}:4"])) < 1_000
    mine = sorted(r.price for r in outcome.records if r.venue == "file:a_btc")
    assert mine == [1.0, 4.0]
    assert outcome.peak_bytes < 12_000_000  # a 1 MiB line limit, never the 50 MB line
    assert outcome.seconds < HANG_BOUND_S
    assert_good_file_whole(outcome, good)


# ---------------------------------------------------------------------------------------------
# 14.7: an unterminated quote must not swallow the rows after it
# ---------------------------------------------------------------------------------------------


def test_an_unterminated_quote_keeps_the_rows_around_it(tmp_path: Path) -> None:
    good = good_file(tmp_path)
    bad = write(
        tmp_path / "a_btc.csv",
        'Date,Close,Note\n2021-01-01,1,ok\n2021-01-02,2,"oops\n'
        + "".join(f"2021-01-{d:02d},{d},fine\n" for d in range(3, 28)),
    )
    outcome = parse(bad, good)
    (reject,) = outcome.rejects
    assert reject.source_key == f"{bad}:3"
    assert reject.payload == {"line": 3, "text": '2021-01-02,2,"oops'}  # never empty
    assert "unterminated quote" in reject.reason
    mine = sorted(r.price for r in outcome.records if r.venue == "file:a_btc")
    assert mine == [1.0, *map(float, range(3, 28))]
    assert_good_file_whole(outcome, good)


def test_a_quoted_field_spanning_too_many_lines(tmp_path: Path) -> None:
    note = "\n".join(f"line {i}" for i in range(30))
    text = f'Date,Close,Note\n2021-01-01,1,"{note}"\n2021-01-02,2,x\n'
    bad = write(tmp_path / "a_btc.csv", text)
    outcome = parse(bad)
    first, *fragments = outcome.rejects
    assert first.source_key == f"{bad}:2"
    assert first.reason.startswith("a quoted field spans 30 lines (limit CSV_MAX_RECORD_LINES=10)")
    # The lines it had swallowed were checked one by one (each is rejected on its own) ...
    assert [r.payload["line"] for r in fragments] == list(range(3, 32))
    assert 'line 29"' in fragments[-1].payload["row"]
    # ... and the row after it is read.
    assert [r.price for r in outcome.records] == [2.0]
    within = write(tmp_path / "b_btc.csv", 'Date,Close,Note\n2021-01-01,1,"two\nlines"\n')
    (ok,) = parse(within).records
    assert ok.price == 1.0


def test_many_unterminated_quotes_cost_linear_time(tmp_path: Path) -> None:
    # 200 times: a line that opens a quote nothing closes, then 200 good lines it swallows
    # until csv's field limit. Each swallowed line is parsed once more, alone: two passes.
    good = good_file(tmp_path)
    bad = tmp_path / "a_btc.csv"
    with bad.open("w") as f:
        f.write("Date,Close\n")
        for block in range(200):
            f.write(f'2021-01-01 00:00:00,"{block}\n')
            f.writelines(f"2021-01-02 {i // 60:02d}:{i % 60:02d}:00,{i + 1}\n" for i in range(200))
    outcome = parse(bad, good, csv_max_line_bytes=4096)
    assert [r.payload["line"] for r in outcome.rejects] == [2 + 201 * b for b in range(200)]
    assert all("unterminated quote" in r.reason for r in outcome.rejects)
    assert len([r for r in outcome.records if r.venue == "file:a_btc"]) == 200 * 200
    assert outcome.seconds < HANG_BOUND_S
    assert_good_file_whole(outcome, good)


def test_batches_stay_bounded_with_long_lines(tmp_path: Path) -> None:
    # 600 lines just under the line limit: the batch is cut by bytes, not only by rows.
    path = tmp_path / "btc.csv"
    with path.open("w") as f:
        f.write("Date,Close,Note\n")
        for i in range(600):
            f.write(f"2021-01-01 00:{i // 60:02d}:{i % 60:02d},{i + 1},{'n' * 60_000}\n")
    sizes = [b.processed for b in source(path).iter_batches({}, 5000)]
    assert sum(sizes) == 600
    assert max(sizes) < 300  # about 16 MiB of lines per batch


# ---------------------------------------------------------------------------------------------
# 14.6 and 14.7: rewrites taken for appends, rejects stored again
# ---------------------------------------------------------------------------------------------


def test_an_in_place_rewrite_with_the_same_head_and_tail_byte(tmp_path: Path) -> None:
    good = good_file(tmp_path)
    rows = [f"2021-01-{d:02d} 00:00:00,{d},{'n' * 400}\n" for d in range(1, 29)]
    bad = write(tmp_path / "a_btc.csv", "Date,Close,Note\n" + "".join(rows))
    first = parse(bad, good)
    offset = first.cursor["files"][str(bad)]["offset"]
    rows[20] = rows[20].replace(",21,", ",77,")  # a corrected price, far past the first 4 KB
    write(bad, "Date,Close,Note\n" + "".join(rows) + "2021-01-29 00:00:00,29,x\n")
    assert bad.read_bytes()[offset - 1 : offset] == b"\n"
    second = parse(bad, good, cursor=first.cursor)
    assert any(
        "the part read before has changed (rewritten in place)" in w for w in second.warnings
    )
    prices = {r.source_timestamp.day: r.price for r in second.records}
    assert (prices[21], prices[29], len(prices)) == (77.0, 29.0, 29)
    # The good file was not touched by any of this: skipped, its checkpoint kept.
    assert second.cursor["files"][str(good)] == first.cursor["files"][str(good)]
    assert second.seconds < HANG_BOUND_S


def test_rereads_do_not_multiply_rejects(tmp_path: Path) -> None:
    good = good_file(tmp_path)
    bad = write(tmp_path / "a_btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,x\n2021-01-03,0\n")
    first = parse(bad, good)
    keys = {(r.source_key, msgspec.json.encode(r.payload)) for r in first.rejects}
    assert len(keys) == 2
    st = bad.stat()
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touch
    touched = parse(bad, good, cursor=first.cursor)
    assert touched.rejects == []
    assert touched.records == []
    with bad.open("r+") as f:  # shrink, then the full re-read reproduces the same rejects
        f.truncate(bad.stat().st_size - 1)
    shrunk = parse(bad, good, cursor=touched.cursor)
    assert any("shrank" in w and "rows it no longer has are kept" in w for w in shrunk.warnings)
    assert {(r.source_key, msgspec.json.encode(r.payload)) for r in shrunk.rejects} == keys
    assert shrunk.cursor["files"][str(good)] == first.cursor["files"][str(good)]
