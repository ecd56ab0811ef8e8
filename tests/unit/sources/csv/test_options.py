"""CSV_COLUMN_MAP: parsing and what each option does to a file (sources/csv/options.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptoetl.config import ConfigError
from cryptoetl.sources.csv import FileOptions, parse_column_map

from .support import last_cursor, records, rejects, run, source, utc, warnings, write


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


def test_column_map_series_options() -> None:
    (entry,) = parse_column_map(
        "market-price.csv:header=Timestamp|Value,venue=Blockchain.info,quote=usd,"
        "interval=24h,volume_unit=Base,volume_quote=Vol USD"
    ).entries
    assert entry.header == ("Timestamp", "Value")
    assert entry.venue == "blockchain.info"
    assert entry.quote == "USD"
    assert entry.interval == "1d"  # canonical form
    assert entry.volume_unit == "base"
    assert entry.columns == {"volume_quote": "Vol USD"}
    assert entry.declared.interval == "1d"


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
        "btc.csv:venue=Bin ance",
        "btc.csv:venue=file:x",  # reserved for venues derived from file names
        "btc.csv:quote=US Dollar",
        "btc.csv:interval=fortnightly",
        "btc.csv:interval=1M",  # month or minute? not guessed
        "btc.csv:volume_unit=usd",
        "btc.csv:header=Date||Close",
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
    assert rec.price == 100.5
    assert rec.source_timestamp == utc(2021, 1, 2)
    (rej,) = rejects(batches)
    assert "no price in column 'Kurs'" in rej.reason


async def test_declared_facts_win_and_a_disagreement_is_said(tmp_path: Path) -> None:
    text = "Date,Symbol,Close,Volume\n" + "".join(
        f"2021-01-0{d},BTC/USDT,{9 + d},{4 + d}\n" for d in (1, 2, 3)
    )
    path = write(tmp_path / "Binance_BTCUSDT_d.csv", text)
    cmap = "Binance_*.csv:venue=binance.us,quote=USD,interval=1h,volume_unit=quote"
    batches = await run(source(path, column_map=cmap))
    recs = records(batches)
    assert {(r.venue, r.quote, r.interval) for r in recs} == {("binance.us", "USD", "1h")}
    assert recs[0].series_info == {
        "venue": "CSV_COLUMN_MAP",
        "quote": "CSV_COLUMN_MAP",
        "interval": "CSV_COLUMN_MAP",
    }
    assert [r.volume_quote for r in recs] == [5.0, 6.0, 7.0]
    said = warnings(batches)
    assert any("venue=binance.us overrides the venue binance" in w for w in said)
    assert any("interval=1h overrides the interval 1d found in the rows" in w for w in said)
    assert any("the rows name the quote USDT; CSV_COLUMN_MAP quote=USD wins" in w for w in said)


async def test_changing_the_column_map_rereads_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n01/02/2021,10\n")
    cursor = last_cursor(await run(source(path)))
    batches = await run(source(path, column_map="btc.csv:date_order=dmy"), cursor)
    assert [r.source_timestamp for r in records(batches)] == [utc(2021, 2, 1)]
    assert any("CSV_COLUMN_MAP options changed" in w for w in warnings(batches))
