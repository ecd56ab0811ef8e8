"""Timestamps, epochs (and Excel's imprecise ones), the day/month order of a file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cryptoetl.sources.csv.dates import DateParser, decide_date_order, naive_iso_suffix

from .support import by_time, last_cursor, records, rejects, run, source, utc, warnings, write


@pytest.mark.parametrize(
    ("text", "order", "expected"),
    [
        ("2020-01-14", None, utc(2020, 1, 14)),
        ("2020-01-14 00:00:00", None, utc(2020, 1, 14)),
        ("2020-01-14T10:30:00Z", None, utc(2020, 1, 14, 10, 30)),
        ("2020-01-14T10:30:00+02:00", None, utc(2020, 1, 14, 8, 30)),
        ("2023-12-08T23:59:59.999Z", None, datetime(2023, 12, 8, 23, 59, 59, 999000, UTC)),
        ("2020-1-5", None, utc(2020, 1, 5)),
        ("2020/01/05", None, utc(2020, 1, 5)),
        ("20200114", None, utc(2020, 1, 14)),
        ("Jan 14, 2020", None, utc(2020, 1, 14)),
        ("14 Jan 2020", None, utc(2020, 1, 14)),
        ("14-Jan-20", None, utc(2020, 1, 14)),
        ("Tue, 14 January 2020 3:05 PM", None, utc(2020, 1, 14, 15, 5)),
        ("January 14, 2020 12:00 AM", None, utc(2020, 1, 14)),
        ("1/3/09", "mdy", utc(2009, 1, 3)),
        ("12/31/17", None, utc(2017, 12, 31)),
        ("01-05-13", "dmy", utc(2013, 5, 1)),
        ("01-05-13", "mdy", utc(2013, 1, 5)),
        ("14.01.2020", None, utc(2020, 1, 14)),
        ("14.01.2020 13:45:10", None, utc(2020, 1, 14, 13, 45, 10)),
        ("17/09/2019 4:00", None, utc(2019, 9, 17, 4)),
        ("1/1/68", "mdy", utc(2068, 1, 1)),
        ("1/1/69", "mdy", utc(1969, 1, 1)),
        ("1594857600", None, utc(2020, 7, 16)),
        ("1595289600000", None, utc(2020, 7, 21)),
        ("1595289600123", None, datetime(2020, 7, 21, 0, 0, 0, 123000, UTC)),
        ("1595289600000000", None, utc(2020, 7, 21)),
        ("1595289600000000000", None, utc(2020, 7, 21)),
        ("1594857600.0", None, utc(2020, 7, 16)),
    ],
)
def test_parse_date(text: str, order: Any, expected: datetime) -> None:
    value = DateParser(order).parse(text)
    assert value == expected
    assert value.tzinfo is UTC


def test_parse_date_unix_column_keeps_8_digit_epochs() -> None:
    assert DateParser(None, unix_column=True).parse("20200114") == datetime.fromtimestamp(
        20200114, UTC
    )


@pytest.mark.parametrize("text", ["", "yesterday", "13/13/2020", "2020-02-30", "1/2/345"])
def test_parse_date_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        DateParser("mdy").parse(text)


@pytest.mark.parametrize("text", ["1.56869E+12", "1.56869e+12", "1.5688E+09"])
def test_an_epoch_in_exponent_notation_is_refused(text: str) -> None:
    # Excel shows a 13-digit number as 1.56869E+12 and writes that back: the last digits (up
    # to 1.4 hours here) are gone, so the value must not become a timestamp.
    with pytest.raises(ValueError, match="exponent notation"):
        DateParser(None, unix_column=True).parse(text)


def test_decide_date_order_rule() -> None:
    assert decide_date_order(True, False, "-") == "dmy"
    assert decide_date_order(False, True, "-") == "mdy"
    assert decide_date_order(True, True, "/") == "mixed"
    assert decide_date_order(False, False, "/") == "mdy"
    assert decide_date_order(False, False, "-") == "dmy"
    assert decide_date_order(False, False, ".") == "dmy"


def test_naive_iso_suffix() -> None:
    assert naive_iso_suffix(["2015-01-01 00:03:00", "2015-01-01T00:04:00"]) == "+00:00"
    assert naive_iso_suffix(["2015-01-01", "2015-01-02"]) == "T00:00+00:00"
    assert naive_iso_suffix(["2015-01-01", "2015-01-01 00:03:00"]) is None
    assert naive_iso_suffix(["2015-01-01T00:03:00Z"]) is None
    assert naive_iso_suffix(["Jan 14, 2020"]) is None
    assert naive_iso_suffix([]) is None


async def test_fast_iso_path_still_takes_other_forms(tmp_path: Path) -> None:
    # The first rows are plain ISO (the fast path); a later row with an offset, one with a
    # bad date, and one in another format still go the general way.
    body = "".join(f"2021-01-{d:02d} 00:00:00,{d}\n" for d in range(1, 6))
    body += '2021-01-06T02:00:00+02:00,6\n2021-13-07 00:00:00,7\n"Jan 8, 2021",8\n'
    batches = await run(source(write(tmp_path / "btc.csv", "Date,Close\n" + body)))
    got = by_time(records(batches))
    assert got[utc(2021, 1, 6)].price == 6.0
    assert got[utc(2021, 1, 8)].price == 8.0
    (rej,) = rejects(batches)
    assert rej.reason.startswith("bad date in column 'Date': '2021-13-07 00:00:00'")


# ---------------------------------------------------------------------------------------------
# Excel-resaved files: the exact text date wins over an imprecise epoch
# ---------------------------------------------------------------------------------------------


async def test_excel_resaved_epochs_yield_to_the_text_date(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "series" / "bitstamp_btcusd_1h_resaved.csv"
    assert b"E+12" in path.read_bytes()
    batches = await run(source(path))
    recs = records(batches)
    assert not rejects(batches)
    # Every row lands on its exact hour (the epochs alone would shift them by up to 1.4 h).
    assert [r.source_timestamp for r in recs] == [utc(2019, 9, 17, h) for h in range(6)]
    assert {r.interval for r in recs} == {"1h"}
    assert last_cursor(batches)["files"][str(path)]["date_order"] == "dmy"


async def test_an_excel_epoch_without_a_text_date_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "unix,close\n1.56869E+12,10\n1568689200000,11\n")
    batches = await run(source(path))
    assert [r.price for r in records(batches)] == [11.0]
    (rej,) = rejects(batches)
    assert "exponent notation" in rej.reason
    assert rej.payload["line"] == 2


# ---------------------------------------------------------------------------------------------
# day/month order, decided per file from all rows
# ---------------------------------------------------------------------------------------------


async def test_day_first_decided_from_a_late_row(tmp_path: Path) -> None:
    # 01-05-13 .. 12-05-13 are ambiguous; only the very last row (25-05-13) decides, after
    # several batches: every row must still be day-first.
    lines = [f"{d:02d}-05-13,{100 + d}" for d in range(1, 13)] + ["25-05-13,125"]
    path = write(tmp_path / "btc.csv", "Date,Close\n" + "\n".join(lines) + "\n")
    batches = await run(source(path), batch_size=3)
    recs = records(batches)
    assert [r.source_timestamp.day for r in recs] == [*range(1, 13), 25]
    assert {r.source_timestamp.month for r in recs} == {5}
    assert last_cursor(batches)["files"][str(path)]["date_order"] == "dmy"


async def test_month_first_decided_from_data(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Value\n1/3/09,1\n2/4/09,2\n12/31/09,3\n")
    recs = records(await run(source(path)))
    assert [r.source_timestamp for r in recs] == [
        utc(2009, 1, 3),
        utc(2009, 2, 4),
        utc(2009, 12, 31),
    ]


@pytest.mark.parametrize(
    ("sep", "expected"), [("/", utc(2021, 1, 2)), ("-", utc(2021, 2, 1)), (".", utc(2021, 2, 1))]
)
async def test_undecidable_order_uses_the_separator_convention(
    tmp_path: Path, sep: str, expected: datetime
) -> None:
    path = write(tmp_path / "btc.csv", f"Date,Close\n01{sep}02{sep}2021,1\n")
    batches = await run(source(path))
    assert records(batches)[0].source_timestamp == expected
    assert any("no date decides the day/month order" in w for w in warnings(batches))


async def test_inconsistent_file_rejects_only_ambiguous_rows(tmp_path: Path) -> None:
    body = "25/01/21,1\n01/26/21,2\n03/04/21,3\n05/05/21,4\n"
    path = write(tmp_path / "btc.csv", "Date,Close\n" + body)
    batches = await run(source(path))
    assert [r.source_timestamp for r in records(batches)] == [
        utc(2021, 1, 25),
        utc(2021, 1, 26),
        utc(2021, 5, 5),  # day == month: the same in both orders
    ]
    (rej,) = rejects(batches)
    assert rej.payload["line"] == 4
    assert "ambiguous day/month order" in rej.reason
    assert any("mixes day-first and month-first" in w for w in warnings(batches))
    assert last_cursor(batches)["files"][str(path)]["date_order"] == "mixed"


async def test_appended_rows_that_flip_the_order_reread_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n01/02/21,1\n")
    first = await run(source(path))
    assert records(first)[0].source_timestamp == utc(2021, 1, 2)  # "/" default: month-first
    with path.open("a") as f:
        f.write("25/02/21,2\n")
    second = await run(source(path), last_cursor(first))
    assert [r.source_timestamp for r in records(second)] == [utc(2021, 2, 1), utc(2021, 2, 25)]
    assert any("change the day/month order from mdy to dmy" in w for w in warnings(second))


async def test_column_map_forces_date_order(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n01/02/2021,10\n03/04/2021,11\n")
    recs = records(await run(source(path, column_map="btc.csv:date_order=dmy")))
    assert [r.source_timestamp for r in recs] == [utc(2021, 2, 1), utc(2021, 4, 3)]
