"""CsvSource: layout detection, messy values, day/month order, checkpoints, CSV_COLUMN_MAP."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cryptoetl.config import ConfigError, Settings
from cryptoetl.sources.base import Batch, MarketRecord, SourceError
from cryptoetl.sources.csv_files import (
    CsvSource,
    FileOptions,
    _LineFeed,
    decide_date_order,
    detect_layout,
    normalize_symbol,
    parse_column_map,
    parse_date,
    parse_number,
    symbol_from_filename,
)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def source(*paths: Path | str, column_map: str = "") -> CsvSource:
    settings = Settings(
        database_url=None,
        api_database_url=None,
        csv_paths=tuple(str(p) for p in paths),
        csv_column_map=column_map,
    )
    return CsvSource(settings)


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


def rejects(batches: list[Batch]) -> list[Any]:
    return [r for b in batches for r in b.rejects]


def warnings(batches: list[Batch]) -> list[str]:
    return [w for b in batches for w in b.warnings]


def by_date(recs: list[MarketRecord]) -> dict[str, MarketRecord]:
    return {r.source_timestamp.date().isoformat(): r for r in recs}


def last_cursor(batches: list[Batch]) -> dict[str, Any]:
    assert batches, "expected at least one batch"
    cursor = batches[-1].cursor
    assert cursor is not None
    return cursor


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


# ---------------------------------------------------------------------------------------------
# numbers, dates, symbols
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8746.6", 8746.6),
        ("8,746.6", 8746.6),
        ("1,234,567.5", 1234567.5),
        ("1,234", 1234.0),
        ("1.234,5", 1234.5),
        ("1,5", 1.5),
        ("1.2K", 1200.0),
        ("610.66K", 610660.0),
        ("3.4M", 3400000.0),
        ("1.38M", 1380000.0),
        ("2.1B", 2100000000.0),
        ("7.83%", 7.83),
        ("-0.93%", -0.93),
        ("$1,234.50", 1234.5),
        ("6.72E+11", 6.72e11),
        (" 42 ", 42.0),
        ("", None),
        ("   ", None),
        ("-", None),
        ("--", None),
        ("null", None),
        ("N/A", None),
        ("NaN", None),
    ],
)
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


def test_parse_number_decimal_comma_in_european_files() -> None:
    assert parse_number("0,312") == 312.0  # comma files: 3-digit group = thousands
    assert parse_number("0,312", decimal_comma=True) == pytest.approx(0.312)
    assert parse_number("1.234,56", decimal_comma=True) == pytest.approx(1234.56)


@pytest.mark.parametrize("text", ["abc", "1,2,3,4", "inf", "-Infinity", "12abc", "1.2.3"])
def test_parse_number_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked via rejects below
        parse_number(text)


@pytest.mark.parametrize(
    ("text", "order", "expected"),
    [
        ("2020-01-14", None, utc(2020, 1, 14)),
        ("2020-01-14 00:00:00", None, utc(2020, 1, 14)),
        ("2020-01-14T10:30:00Z", None, utc(2020, 1, 14, 10, 30)),
        ("2020-01-14T10:30:00+02:00", None, utc(2020, 1, 14, 8, 30)),
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
        ("1/1/68", "mdy", utc(2068, 1, 1)),
        ("1/1/69", "mdy", utc(1969, 1, 1)),
        ("1594857600", None, utc(2020, 7, 16)),
        ("1595289600000", None, utc(2020, 7, 21)),
        ("1595289600000000", None, utc(2020, 7, 21)),
        ("1595289600000000000", None, utc(2020, 7, 21)),
        ("1594857600.0", None, utc(2020, 7, 16)),
    ],
)
def test_parse_date(text: str, order: Any, expected: datetime) -> None:
    value = parse_date(text, order)
    assert value == expected
    assert value.tzinfo is UTC


def test_parse_date_unix_column_keeps_8_digit_epochs() -> None:
    assert parse_date("20200114", unix_column=True) == datetime.fromtimestamp(20200114, UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "13/13/2020", "2020-02-30", "1/2/345"])
def test_parse_date_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_date(text, "mdy")


def test_decide_date_order_rule() -> None:
    assert decide_date_order(True, False, "-") == "dmy"
    assert decide_date_order(False, True, "-") == "mdy"
    assert decide_date_order(True, True, "/") == "mixed"
    assert decide_date_order(False, False, "/") == "mdy"
    assert decide_date_order(False, False, "-") == "dmy"
    assert decide_date_order(False, False, ".") == "dmy"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("BTC/USD", "BTC"),
        ("BTCUSD", "BTC"),
        ("btc", "BTC"),
        ("ETH-USDT", "ETH"),
        ("XRPUSDC", "XRP"),
        ("BTC/EUR", "BTC"),
        ("solusdt", "SOL"),
        ("USDT", "USDT"),
        ("BUSD", "BUSD"),
        ("ETH/BTC", "ETH/BTC"),
    ],
)
def test_normalize_symbol(raw: str, expected: str) -> None:
    assert normalize_symbol(raw) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Bitcoin.csv", "BTC"),
        ("BTC-USD.csv", "BTC"),
        ("coin_Bitcoin.csv", "BTC"),
        ("BTCUSD.csv", "BTC"),
        ("Bitfinex_ETHUSD_d.csv", "ETH"),
        ("bitcoin_cash_daily.csv", "BCH"),
        ("Bitcoin Historical Data - Investing.com.csv", "BTC"),
        ("solana-usdt-1h.csv", "SOL"),
        ("usdt_daily.csv", "USDT"),
        ("prices.csv", None),
        ("btc_eth_ratio.csv", None),
        ("link_list.csv", None),
        ("market_price.csv", None),
    ],
)
def test_symbol_from_filename(name: str, expected: str | None) -> None:
    assert symbol_from_filename(name) == expected


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------


def test_layout_yahoo_prefers_close_over_adj_close() -> None:
    header = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
    layout = detect_layout(header, "/x/BTC-USD.csv")
    assert (layout.date, layout.price, layout.volume) == (0, 4, 6)
    assert (layout.open, layout.high, layout.low) == (1, 2, 3)
    assert (layout.default_symbol, layout.symbol_origin) == ("BTC", "file name")


def test_layout_prefers_unix_and_volume_usd() -> None:
    header = ["unix", "date", "symbol", "open", "high", "low", "close", "Volume BTC", "Volume USD"]
    layout = detect_layout(header, "/x/any.csv")
    assert layout.date == 0
    assert layout.date_is_unix
    assert layout.date_fallback == 1
    assert layout.volume == 8
    assert layout.symbol == 2


def test_layout_aliases_case_and_punctuation() -> None:
    header = ["Date(UTC)", "Ticker", "Price (USD)", "market_cap", "Vol.", "Change %"]
    layout = detect_layout(header, "/x/any.csv")
    assert (layout.date, layout.symbol, layout.price, layout.market_cap) == (0, 1, 2, 3)
    assert (layout.volume, layout.change) == (4, 5)
    layout = detect_layout(["TIMESTAMP", "COIN", "VALUE", "MarketCap", "volume_24h"], "/x/a.csv")
    assert (layout.date, layout.name, layout.price, layout.market_cap, layout.volume) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert layout.symbol == -1
    assert layout.default_symbol is None


def test_layout_symbol_and_name_columns() -> None:
    layout = detect_layout(["SNo", "Name", "Symbol", "Date", "Close"], "/x/a.csv")
    assert (layout.name, layout.symbol) == (1, 2)


def test_layout_without_date_or_value_is_an_error() -> None:
    with pytest.raises(SourceError, match="no recognisable date"):
        detect_layout(["Symbol", "Close"], "/x/a.csv")
    with pytest.raises(SourceError, match="no recognisable date"):
        detect_layout(["Date", "Symbol", "Comment"], "/x/a.csv")


def test_layout_without_symbol_names_the_file() -> None:
    with pytest.raises(SourceError, match=r"/x/prices\.csv: no symbol column.*CSV_COLUMN_MAP"):
        detect_layout(["Date", "Close"], "/x/prices.csv")


def test_layout_from_column_map() -> None:
    options = FileOptions(
        pattern="*.csv", columns={"date": "Day", "price": "Kurs"}, default_symbol="ETH"
    )
    layout = detect_layout(["Kurs", "Day", "Close"], "/x/a.csv", options)
    assert (layout.date, layout.price, layout.default_symbol) == (1, 0, "ETH")
    assert layout.symbol_origin == "CSV_COLUMN_MAP"
    with pytest.raises(SourceError, match="CSV_COLUMN_MAP maps price to column 'Wert'"):
        detect_layout(
            ["Day", "Close"], "/x/a.csv", FileOptions(pattern="a", columns={"price": "Wert"})
        )


# ---------------------------------------------------------------------------------------------
# CSV_COLUMN_MAP
# ---------------------------------------------------------------------------------------------


def test_column_map_parses_into_structs() -> None:
    cmap = parse_column_map(
        " btc_prices.csv: default_symbol=btc , price=Value ; other*.csv:date=Day,date_order=DMY;"
    )
    first, second = cmap.entries
    assert first == FileOptions(
        pattern="btc_prices.csv", columns={"price": "Value"}, default_symbol="BTC"
    )
    assert second == FileOptions(pattern="other*.csv", columns={"date": "Day"}, date_order="dmy")
    assert cmap.options_for("/data/BTC_Prices.csv") is first
    assert cmap.options_for("/data/other_2.csv") is second
    assert cmap.options_for("/data/x.csv") is None
    assert parse_column_map("").entries == ()


def test_column_map_pattern_with_slash_matches_the_path() -> None:
    cmap = parse_column_map("/data/eu/*.csv:date_order=dmy")
    assert cmap.options_for("/data/eu/a.csv") is not None
    assert cmap.options_for("/data/us/a.csv") is None


@pytest.mark.parametrize(
    "text",
    [
        "btc.csv",  # no ':'
        ":price=Value",  # no pattern
        "btc.csv:",  # no options
        "btc.csv:price",  # no '='
        "btc.csv:price=",  # empty header
        "btc.csv:colour=Value",  # unknown field
        "btc.csv:price=A,price=B",  # twice
        "btc.csv:date_order=ymd",
        "btc.csv:default_symbol=BT C!",
        "a.csv:price=A;A.csv:price=B",  # same pattern twice
    ],
)
def test_column_map_errors_name_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="CSV_COLUMN_MAP"):
        parse_column_map(text)


def test_source_rejects_a_bad_column_map_at_startup() -> None:
    with pytest.raises(ConfigError, match="CSV_COLUMN_MAP"):
        source(column_map="oops")


async def test_column_map_applies_to_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "feed.csv", "Day,Kurs\n2021-01-02,100.5\n2021-01-03,-\n")
    batches = await run(source(path, column_map="feed.csv:date=Day,price=Kurs,default_symbol=SOL"))
    (rec,) = records(batches)
    assert rec.symbol == "SOL"
    assert rec.price_usd == 100.5
    assert rec.source_id == "SOL:2021-01-02T00:00:00Z"
    assert rec.metadata["symbol_from"] == "CSV_COLUMN_MAP"
    (rej,) = rejects(batches)
    assert "no price in column 'Kurs'" in rej.reason


async def test_column_map_forces_date_order(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n01/02/2021,10\n03/04/2021,11\n")
    recs = records(await run(source(path, column_map="btc.csv:date_order=dmy")))
    assert [r.source_timestamp for r in recs] == [utc(2021, 2, 1), utc(2021, 4, 3)]


async def test_changing_the_column_map_rereads_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n01/02/2021,10\n")
    cursor = last_cursor(await run(source(path)))
    batches = await run(source(path, column_map="btc.csv:date_order=dmy"), cursor)
    assert [r.source_timestamp for r in records(batches)] == [utc(2021, 2, 1)]
    assert any("CSV_COLUMN_MAP options changed" in w for w in warnings(batches))


# ---------------------------------------------------------------------------------------------
# our fixtures
# ---------------------------------------------------------------------------------------------


async def test_fixture_btc_usd_daily(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "btc_usd_daily.csv"
    batches = await run(source(path))
    recs = records(batches)
    assert len(recs) == 30
    assert not rejects(batches)
    first = recs[0]
    assert first.source_id == "BTC:2021-03-01T00:00:00Z"
    assert first.source_type == "csv"
    assert first.symbol == "BTC"
    assert first.name is None
    assert first.price_usd == 43483.32
    assert first.volume_24h_usd == 51548690716.0
    assert first.metadata == {
        "open": 45210.37,
        "high": 45780.34,
        "low": 42459.32,
        "file": "btc_usd_daily.csv",
        "line": 2,
        "symbol_from": "file name",
    }
    assert first.coin_id is None
    assert first.rank is None
    assert first.change_24h_pct is None
    assert recs[-1].source_timestamp == utc(2021, 3, 30)
    state = last_cursor(batches)["files"][str(path)]
    assert state["eof"]
    assert state["offset"] == path.stat().st_size
    assert state["line"] == 31
    assert state["last_timestamp"] == "2021-03-30T00:00:00Z"


async def test_fixture_multi_coin(fixtures_dir: Path) -> None:
    recs = records(await run(source(fixtures_dir / "csv" / "multi_coin.csv")))
    assert len(recs) == 24
    assert {r.symbol for r in recs} == {"BTC", "ETH", "SOL"}
    first = recs[0]
    assert (first.symbol, first.price_usd, first.market_cap_usd) == ("BTC", 30710.69, 595787386000)
    assert first.volume_24h_usd == 9464362851.41
    assert len({r.source_id for r in recs}) == 24


async def test_fixture_messy_investing_style(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "eth_investing_messy.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw
    assert not raw.endswith(b"\n")
    batches = await run(source(path))
    recs = by_date(records(batches))
    assert len(recs) == 20
    assert not rejects(batches)
    newest = recs["2021-01-14"]
    assert newest.symbol == "ETH"  # from the file name
    assert newest.price_usd == 1228.41
    assert newest.metadata["open"] == 1195.27
    assert newest.volume_24h_usd == 2340000.0
    assert newest.change_24h_pct == 2.77
    assert recs["2021-01-13"].change_24h_pct == -0.70
    k_row = next(r for r in recs.values() if r.metadata["line"] == 8)  # first "K" volume
    assert k_row.volume_24h_usd is not None
    assert 300_000 <= k_row.volume_24h_usd < 1_000_000
    oldest = recs["2020-12-26"]
    assert oldest.volume_24h_usd is None
    assert oldest.change_24h_pct is None
    assert oldest.price_usd == 1310.99
    # The raw payload keeps the cells as received (quotes removed by CSV, text untouched).
    payload = batches[0].raw[0].payload
    assert payload["header"][0] == "Date"
    assert payload["first_line"] == 2
    assert payload["rows"][0][:2] == ["Jan 14, 2021", "1,228.41"]


async def test_fixture_unix_ms_and_s(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "btcusd_unix_mixed.csv"
    batches = await run(source(path))
    recs = records(batches)
    assert len(recs) == 12
    assert not rejects(batches)
    rows = batches[0].raw[0].payload["rows"]
    units = {len(row[0]) for row in rows}
    assert units == {13, 10}  # the file really mixes milliseconds and seconds
    for rec, row in zip(recs, rows, strict=True):
        assert rec.source_timestamp.strftime("%Y-%m-%d %H:%M:%S") == row[1]
        assert rec.symbol == "BTC"
        assert rec.metadata["symbol_raw"] == "BTC/USD"
        assert rec.volume_24h_usd == float(row[7])  # Volume USD, not Volume BTC


async def test_fixture_european_semicolon(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "xrp_eu_semicolon.csv"
    batches = await run(source(path))
    recs = records(batches)
    assert len(recs) == 15
    assert not rejects(batches)
    assert recs[0].source_timestamp == utc(2019, 4, 1)
    assert recs[0].price_usd == pytest.approx(0.312)  # "0,312": decimal comma in a ';' file
    assert recs[1].price_usd == pytest.approx(0.3202)
    assert recs[0].market_cap_usd == 13089560000.0
    state = last_cursor(batches)["files"][str(path)]
    assert state["delimiter"] == ";"
    assert state["date_order"] == "dmy"


async def test_fixture_directory_run_and_unchanged_rerun(fixtures_dir: Path) -> None:
    src = source(fixtures_dir / "csv")
    first = await run(src, batch_size=7)
    assert sum(b.processed for b in first) == len(records(first)) + len(rejects(first))
    assert all(len(b.records) + len(b.rejects) <= 7 for b in first)
    assert await run(src, last_cursor(first)) == []


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


# ---------------------------------------------------------------------------------------------
# rejects and row handling
# ---------------------------------------------------------------------------------------------


async def test_row_rejects_name_the_problem(tmp_path: Path) -> None:
    text = (
        "Date,Close,Volume\n"
        "2021-01-01,10,5\n"
        "2021-01-02,abc,5\n"
        "someday,10,5\n"
        "2021-01-04,0,5\n"
        "2021-01-05,-3,5\n"
        "2021-01-06,,\n"
        "2021-01-07,10,1x\n"
        "2021-01-08\n"
        "2021-01-09,,7\n"
        "2021-01-10,5,-7\n"
    )
    path = write(tmp_path / "btc.csv", text)
    batches = await run(source(path))
    recs = records(batches)
    assert [r.source_timestamp.day for r in recs] == [1, 9]
    assert recs[1].price_usd is None
    assert recs[1].volume_24h_usd == 7.0
    reasons = {r.payload["line"]: r.reason for r in rejects(batches)}
    assert reasons[3] == "bad number in column 'Close': 'abc' (not a number)"
    assert reasons[4].startswith("bad date in column 'Date': 'someday'")
    assert reasons[5] == "non-positive price in column 'Close': '0'"
    assert reasons[6] == "non-positive price in column 'Close': '-3'"
    assert reasons[7] == "no price in column 'Close' and no other value"
    assert reasons[8].startswith("bad number in column 'Volume': '1x'")
    assert reasons[9] == "row has 1 cells, the header has 3"
    assert reasons[11] == "negative volume in column 'Volume': '-7'"
    rej = rejects(batches)[0]
    assert rej.source_key == f"{path}:3"
    assert rej.payload == {
        "header": ["Date", "Close", "Volume"],
        "row": ["2021-01-02", "abc", "5"],
        "line": 3,
    }
    assert sum(b.processed for b in batches) == 10


async def test_coin_names_map_to_symbols(tmp_path: Path) -> None:
    text = (
        "currency,date,close\n"
        "bitcoin,2019-04-24,5000\n"
        "ethereum,2019-04-24,160\n"
        "bitcoin-cash,2019-04-24,280\n"
        "Shiny Coin,2019-04-24,1\n"
        "BTC,2019-04-25,5100\n"
        ",2019-04-25,1\n"
    )
    batches = await run(source(write(tmp_path / "all.csv", text)))
    got = [(r.symbol, r.name) for r in records(batches)]
    assert got == [
        ("BTC", "bitcoin"),
        ("ETH", "ethereum"),
        ("BCH", "bitcoin-cash"),
        ("SHINY-COIN", "Shiny Coin"),
        ("BTC", None),
    ]
    (rej,) = rejects(batches)
    assert rej.reason == "empty coin name in column 'currency'"


async def test_blank_lines_preamble_and_line_numbers(tmp_path: Path) -> None:
    text = "https://www.example.com/data\nDate,Symbol,Close\n\n2021-01-01,ETHUSDT,10\n\n2021-01-02,ETHUSDT,11"
    batches = await run(source(write(tmp_path / "x.csv", text)))
    recs = records(batches)
    assert [r.metadata["line"] for r in recs] == [4, 6]
    assert recs[0].metadata["quote"] == "USDT"
    assert recs[0].symbol == "ETH"
    assert sum(b.processed for b in batches) == 2


async def test_duplicates_within_a_batch_keep_the_later_row(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,10\n2021-01-01,11\n")
    batches = await run(source(path))
    (rec,) = records(batches)
    assert rec.price_usd == 11.0
    assert any("repeat a symbol and timestamp" in w for w in warnings(batches))


async def test_non_utf8_line_is_decoded_as_latin1(tmp_path: Path) -> None:
    path = tmp_path / "btc.csv"
    path.write_bytes(b"Date,Close,Note\n2021-01-01,10,caf\xe9\n")
    batches = await run(source(path))
    assert records(batches)[0].price_usd == 10.0
    assert batches[0].raw[0].payload["rows"][0][2] == "café"
    assert any("not UTF-8" in w for w in warnings(batches))


async def test_batches_are_bounded_and_carry_one_raw_payload(tmp_path: Path) -> None:
    lines = "".join(f"2021-01-{d:02d},{d}\n" for d in range(1, 31))
    path = write(tmp_path / "btc.csv", "Date,Close\n" + lines)
    batches = await run(source(path), batch_size=7)
    assert [b.processed for b in batches] == [7, 7, 7, 7, 2]
    assert [b.raw[0].payload["first_line"] for b in batches] == [2, 9, 16, 23, 30]
    assert all(len(b.raw) == 1 and b.raw[0].source_key == str(path) for b in batches)
    states = [b.cursor["files"][str(path)] for b in batches if b.cursor]
    assert [s["line"] for s in states] == [8, 15, 22, 29, 31]
    assert [s["eof"] for s in states] == [False] * 4 + [True]


# ---------------------------------------------------------------------------------------------
# file-level problems and path resolution
# ---------------------------------------------------------------------------------------------


async def test_file_level_problems_do_not_stop_other_files(tmp_path: Path) -> None:
    bad = write(tmp_path / "a_notes.csv", "hello,world\nfoo,bar\n")
    nosym = write(tmp_path / "b_prices.csv", "Date,Close\n2021-01-01,1\n")
    cr_only = write(tmp_path / "c_eth.csv", "Date,Close\n2021-01-01,1\n", "\r")
    utf16 = tmp_path / "c_btc.csv"
    utf16.write_bytes("Date,Close\n2021-01-01,1\n".encode("utf-16"))
    good = write(tmp_path / "d_btc.csv", "Date,Close\n2021-01-01,1\n")
    src = source(tmp_path)
    batches = await run(src)
    assert [r.symbol for r in records(batches)] == ["BTC"]
    file_rejects = {r.source_key: r.reason for r in rejects(batches)}
    assert "no recognisable date and price/value columns" in file_rejects[str(bad)]
    assert "no symbol column" in file_rejects[str(nosym)]
    assert str(nosym) in file_rejects[str(nosym)]
    assert "UTF-16" in file_rejects[str(utf16)]
    assert "CR-only line ends" in file_rejects[str(cr_only)]
    assert sum("file rejected" in w for w in warnings(batches)) == 4
    cursor = last_cursor(batches)
    assert cursor["files"][str(bad)]["error"]
    assert cursor["files"][str(good)]["eof"]
    # Unchanged: rejected files are not rejected again every run.
    assert await run(src, cursor) == []


async def test_paths_files_directories_globs(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    a = write(tmp_path / "d" / "b_btc.csv", "Date,Close\n2021-01-01,1\n")
    b = write(tmp_path / "d" / "a_eth.CSV", "Date,Close\n2021-01-01,2\n")
    write(tmp_path / "d" / "notes.txt", "x")
    c = write(tmp_path / "sol_1.csv", "Date,Close\n2021-01-01,3\n")
    batches = await run(source(tmp_path / "d", tmp_path / "sol_*.csv", a, tmp_path / "missing.csv"))
    assert [r.symbol for r in records(batches)] == ["ETH", "BTC", "SOL"]
    assert set(last_cursor(batches)["files"]) == {str(a), str(b), str(c)}
    assert any(
        "'" + str(tmp_path / "missing.csv") + "' does not exist" in w for w in warnings(batches)
    )


async def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "btc_empty.csv", "")
    header = write(tmp_path / "btc_header.csv", "Date,Close\n")
    batches = await run(source(empty, header))
    assert len(batches) == 2
    assert not records(batches)
    assert not rejects(batches)
    cursor = last_cursor(batches)
    assert cursor["files"][str(header)]["offset"] == header.stat().st_size
    assert await run(source(empty, header), cursor) == []
    with header.open("a") as f:
        f.write("2021-01-01,5\n")
    assert [r.price_usd for r in records(await run(source(empty, header), cursor))] == [5.0]


# ---------------------------------------------------------------------------------------------
# incremental checkpoint
# ---------------------------------------------------------------------------------------------


async def test_unchanged_file_yields_no_batches(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n")
    cursor = last_cursor(await run(source(path)))
    assert await run(source(path), cursor) == []


async def test_appended_rows_only(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,2\n", "\r\n")
    first = await run(source(path))
    assert len(records(first)) == 2
    with path.open("ab") as f:
        f.write(b"2021-01-03,3\r\n2021-01-04,4\r\n")
    second = await run(source(path), last_cursor(first))
    recs = records(second)
    assert [(r.price_usd, r.metadata["line"]) for r in recs] == [(3.0, 4), (4.0, 5)]
    assert not any("re-reading" in w for w in warnings(second))
    state = last_cursor(second)["files"][str(path)]
    assert state["offset"] == path.stat().st_size
    assert state["line"] == 5
    assert state["last_timestamp"] == "2021-01-04T00:00:00Z"
    assert await run(source(path), last_cursor(second)) == []


async def test_resume_after_a_crash_mid_file(tmp_path: Path) -> None:
    lines = "".join(f"2021-01-{d:02d},{d}\n" for d in range(1, 11))
    path = write(tmp_path / "btc.csv", "Date,Close\n" + lines)
    batches = await run(source(path), batch_size=4)
    committed = batches[0].cursor  # the pipeline committed only the first batch, then died
    assert committed is not None
    assert not committed["files"][str(path)]["eof"]
    again = await run(source(path), committed, batch_size=4)
    assert [r.price_usd for r in records(again)] == [float(d) for d in range(5, 11)]


async def test_rewritten_file_is_reread(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,2\n")
    cursor = last_cursor(await run(source(path)))
    replacement = write(
        tmp_path / "new.tmp", "Date,Close\n2021-01-01,10\n2021-01-02,20\n2021-01-03,30\n"
    )
    os.replace(replacement, path)  # new inode, grown: must not be taken for an append
    batches = await run(source(path), cursor)
    assert [r.price_usd for r in records(batches)] == [10.0, 20.0, 30.0]
    assert any("replaced" in w for w in warnings(batches))


async def test_grown_file_with_a_changed_head_is_reread(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n")
    cursor = last_cursor(await run(source(path)))
    with path.open("r+") as f:  # same inode: edit the first row in place, then append
        f.seek(0)
        f.write("Date,Close\n2021-01-01,7\n2021-01-02,8\n")
    batches = await run(source(path), cursor)
    assert [r.price_usd for r in records(batches)] == [7.0, 8.0]
    assert any("its beginning changed" in w for w in warnings(batches))


async def test_shrunk_or_edited_file_is_reread(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,2\n")
    cursor = last_cursor(await run(source(path)))
    with path.open("r+") as f:
        f.truncate(len("Date,Close\n2021-01-01,1\n"))
    batches = await run(source(path), cursor)
    assert [r.price_usd for r in records(batches)] == [1.0]
    assert any("shrank" in w for w in warnings(batches))
    cursor = last_cursor(batches)
    with path.open("r+") as f:  # same size, new content and mtime
        f.write("Date,Close\n2021-01-01,9\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    batches = await run(source(path), cursor)
    assert [r.price_usd for r in records(batches)] == [9.0]
    assert any("modified in place" in w for w in warnings(batches))


async def test_trailing_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "btc.csv"
    path.write_bytes(b"Date,Close\n2021-01-01,1\n2021-01-02,87")  # a writer is mid-row
    first = await run(source(path))
    assert [r.price_usd for r in records(first)] == [1.0, 87.0]  # processed at EOF...
    state = last_cursor(first)["files"][str(path)]
    assert state["offset"] == len(b"Date,Close\n2021-01-01,1\n")  # ...but not counted past
    assert state["line"] == 2
    assert state["eof"]
    assert await run(source(path), last_cursor(first)) == []  # unchanged: nothing to do
    with path.open("ab") as f:
        f.write(b"46.6\n2021-01-03,3\n")
    second = await run(source(path), last_cursor(first))
    recs = records(second)
    assert [(r.source_id, r.price_usd, r.metadata["line"]) for r in recs] == [
        ("BTC:2021-01-02T00:00:00Z", 8746.6, 3),  # same source_id: the upsert corrects it
        ("BTC:2021-01-03T00:00:00Z", 3.0, 4),
    ]
    assert last_cursor(second)["files"][str(path)]["offset"] == path.stat().st_size


def test_line_feed_stops_before_a_line_past_the_size_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\n1,2\n3,4\n")
    with path.open("rb") as f:
        feed = _LineFeed(f, 0, len(b"\xef\xbb\xbfa,b\n1,2\n3"))  # the size when opened
        assert list(feed) == ["a,b\n", "1,2\n"]  # "3,4" was still being written
        assert feed.pos == len(b"\xef\xbb\xbfa,b\n1,2\n")


async def test_cursor_keeps_other_files_and_drops_unlisted_ones(tmp_path: Path) -> None:
    a = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n")
    b = write(tmp_path / "eth.csv", "Date,Close\n2021-01-01,2\n")
    cursor = last_cursor(await run(source(a, b)))
    with b.open("a") as f:
        f.write("2021-01-02,3\n")
    batches = await run(source(a, b), cursor)
    assert set(batches[0].cursor["files"]) == {str(a), str(b)}  # type: ignore[index]
    assert batches[0].cursor["files"][str(a)] == cursor["files"][str(a)]  # type: ignore[index]
    batches = await run(source(b), {"files": {**cursor["files"], "junk": {"bad": 1}}})
    assert set(last_cursor(batches)["files"]) == {str(b)}


async def test_malformed_csv_line_is_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    huge = "x" * 140_000  # beyond csv.field_size_limit()
    path = write(tmp_path / "btc.csv", f"Date,Close,Note\n2021-01-01,1,{huge}\n2021-01-02,2,ok\n")
    batches = await run(source(path))
    assert [r.price_usd for r in records(batches)] == [2.0]
    (rej,) = rejects(batches)
    assert rej.reason.startswith("malformed CSV: field larger than field limit")
    assert rej.payload["line"] == 2


async def test_consumer_may_stop_early(tmp_path: Path) -> None:
    lines = "".join(f"2021-01-{d:02d},{d}\n" for d in range(1, 11))
    path = write(tmp_path / "btc.csv", "Date,Close\n" + lines)
    batches = source(path).batches({}, 3)
    assert isinstance(batches, AsyncGenerator)
    first = await anext(batches)
    assert len(first.records) == 3
    await batches.aclose()  # the pipeline stops between batches: the file is closed cleanly
