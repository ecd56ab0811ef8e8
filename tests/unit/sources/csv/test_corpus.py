"""Every real-world CSV of the corpus through CsvSource, checked against facts of each file.

The files are read in place (never copied into the repo); see the corpus SOURCES.md.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cryptoetl.sources.base import Batch, MarketRecord, Reject
from cryptoetl.sources.csv import legacy_series

from .support import by_time, identity, raw_rows, source, utc

INVESTING = "investing_com_btc_daily_2010-2020_bom_quoted_k_m_suffixes.csv"
BITFINEX = "cryptodatadownload_bitfinex_btcusd_daily_mixed_unix_ms_and_s.csv"
KAGGLE_MULTI = "kaggle_consolidated_coin_data_multicoin_blank_volume.csv"
KAGGLE_BTC = "kaggle_coin_bitcoin_excel_resaved_ddmmyy.csv"
BLOCKCHAIN = "blockchain_info_market_price_mdyy_crlf.csv"
YAHOO = "yahoo_finance_btc_usd_daily_2014-2023.csv"
# blockchain.info's file names no coin and no currency: the operator says which they are.
COLUMN_MAP = "blockchain_info_*.csv:default_symbol=BTC,quote=USD"


class Result(msgspec.Struct):
    batches: list[Batch]
    records: list[MarketRecord]
    rejects: list[Reject]
    cursor: dict[str, Any]
    warnings: list[str]

    def state(self, path: Path) -> dict[str, Any]:
        return self.cursor["files"][str(path)]  # type: ignore[no-any-return]


async def read(path: Path, column_map: str = COLUMN_MAP, batch_size: int = 1000) -> Result:
    batches = [b async for b in source(path, column_map=column_map).batches({}, batch_size)]
    records = [r for b in batches for r in b.records if isinstance(r, MarketRecord)]
    assert len(records) == sum(len(b.records) for b in batches)
    rejects = [r for b in batches for r in b.rejects]
    assert sum(b.processed for b in batches) == len(records) + len(rejects)
    cursor = batches[-1].cursor
    assert cursor is not None
    return Result(batches, records, rejects, cursor, [w for b in batches for w in b.warnings])


@pytest.fixture(scope="module")
def csv_dir(corpus_dir: Path) -> Path:
    return corpus_dir / "csv"


async def test_every_corpus_file_parses(csv_dir: Path) -> None:
    files = sorted(csv_dir.glob("*.csv"))
    assert len(files) == 6
    src = source(csv_dir, column_map=COLUMN_MAP)
    batches = [b async for b in src.batches({}, 5000)]
    counts: Counter[str] = Counter()
    series: dict[str, set[tuple[str, str | None, str | None]]] = {}
    for batch in batches:
        name = Path(batch.raw[0].source_key).name if batch.raw else ""
        for record in batch.records:
            assert isinstance(record, MarketRecord)
            counts[name] += 1
            series.setdefault(name, set()).add((record.venue, record.quote, record.interval))
            assert record.source_timestamp.tzinfo is not None
            assert record.price is None or record.price > 0
            assert record.metadata is None
    assert counts == {
        INVESTING: 3468,
        BITFINEX: 2443,
        KAGGLE_MULTI: 13576,
        KAGGLE_BTC: 2984,
        BLOCKCHAIN: 2694,
        YAHOO: 3143,
    }
    assert series == {
        INVESTING: {("investing.com", None, "1d")},
        BITFINEX: {("bitfinex", "USD", "1d")},
        KAGGLE_MULTI: {("file:kaggle_consolidated_coin_data_multicoin_blank_volume", None, "1d")},
        KAGGLE_BTC: {("file:kaggle_coin_bitcoin_excel_resaved_ddmmyy", None, "1d")},
        BLOCKCHAIN: {("file:blockchain_info_market_price_mdyy_crlf", "USD", "1d")},
        YAHOO: {("yahoo", "USD", "1d")},
    }
    cursor = batches[-1].cursor
    assert cursor is not None
    assert all(state["eof"] and state["error"] is None for state in cursor["files"].values())
    # A second run over the unchanged corpus does no work at all.
    assert [b async for b in src.batches(cursor, 5000)] == []


async def test_series_detection_does_not_depend_on_the_batch_size(csv_dir: Path) -> None:
    for path in sorted(csv_dir.glob("*.csv")):
        small, large = await read(path, batch_size=97), await read(path, batch_size=5000)
        assert [identity(r) for r in small.records] == [identity(r) for r in large.records]
        assert small.records == large.records


async def test_investing_com_bom_quotes_suffixes(csv_dir: Path) -> None:
    path = csv_dir / INVESTING
    result = await read(path)
    assert len(result.records) == 3468
    assert not result.rejects
    rows = by_time(result.records)
    newest = rows[
        utc(2020, 1, 14)
    ]  # "Jan 14, 2020","8,746.6","8,111.2","8,848.4",...,"1.38M","7.83%"
    assert (newest.symbol, newest.venue) == ("BTC", "investing.com")
    assert newest.price == 8746.6
    assert (newest.open, newest.high, newest.low) == (8111.2, 8848.4, 8111.2)
    assert newest.volume_base == 1_380_000.0  # "Vol.": in BTC (Investing.com's documented unit)
    assert newest.volume_quote is None
    assert newest.change_pct == 7.83
    jan13 = rows[utc(2020, 1, 13)]  # ... "610.66K","-0.93%"
    assert jan13.volume_base == 610_660.0
    assert jan13.change_pct == -0.93
    placeholder = rows[utc(2011, 6, 25)]  # "Jun 25, 2011","17.5",...,"-","0.00%"
    assert placeholder.price == 17.5
    assert placeholder.volume_base is None
    assert sum(r.volume_base is None for r in result.records) == 6
    oldest = rows[utc(2010, 7, 18)]  # the last line, without a final newline
    assert (oldest.price, oldest.open, oldest.volume_base) == (0.1, 0.0, 80.0)
    # The file does not say its currency: the price is kept, never as USD, and that is said.
    assert {r.quote for r in result.records} == {None}
    assert newest.price_usd is None
    assert any(f"CSV_COLUMN_MAP={INVESTING}:quote=<CODE>" in w for w in result.warnings)
    declared = await read(path, column_map="investing_com_*.csv:quote=USD")
    assert by_time(declared.records)[utc(2020, 1, 14)].price_usd == 8746.6
    # The header was read through the BOM; the raw payload is the lines as in the file.
    payload = result.batches[0].raw[0].payload
    assert payload["header"] == ["Date", "Price", "Open", "High", "Low", "Vol.", "Change %"]
    assert raw_rows(payload)[0] == [
        "Jan 14, 2020",
        "8,746.6",
        "8,111.2",
        "8,848.4",
        "8,111.2",
        "1.38M",
        "7.83%",
    ]
    # No final newline: the last row is processed, the checkpoint stays before it.
    state = result.state(path)
    assert state["offset"] < path.stat().st_size
    assert state["line"] == 3468


async def test_bitfinex_unix_milliseconds_then_seconds(csv_dir: Path) -> None:
    path = csv_dir / BITFINEX
    result = await read(path)
    assert len(result.records) == 2443
    assert not result.rejects
    rows = by_time(result.records)
    assert utc(2020, 7, 19) in rows  # 1595116800000 (ms), line 457
    assert utc(2020, 7, 18) in rows  # 1595030400 (s), line 458
    assert min(rows) == utc(2015, 2, 9)
    newest = rows[utc(2021, 10, 17)]  # the first row: newest first
    assert (newest.venue, newest.symbol, newest.quote, newest.interval) == (
        "bitfinex",
        "BTC",
        "USD",
        "1d",
    )
    assert newest.price == newest.price_usd == 61048.0
    assert newest.volume_quote == 2278649.13919448  # "Volume USD"
    assert newest.volume_base == 37.32553301  # "Volume BTC"
    assert newest.series_info == {
        "venue": "file name",
        "quote": "symbol pair",
        "interval": "row spacing",
    }
    # Every unix value (either unit) agrees with the file's own text date column.
    years = Counter[int]()
    for batch in result.batches:
        for row, record in zip(raw_rows(batch.raw[0].payload), batch.records, strict=True):
            assert isinstance(record, MarketRecord)
            assert record.source_timestamp.strftime("%Y-%m-%d %H:%M:%S") == row[1]
            years[record.source_timestamp.year] += 1
    assert set(years) == set(range(2015, 2022))


async def test_kaggle_multi_coin_names_and_blank_cells(csv_dir: Path) -> None:
    path = csv_dir / KAGGLE_MULTI
    result = await read(path)
    assert len(result.records) == 13576
    assert not result.rejects
    per_symbol = Counter(r.symbol for r in result.records)
    assert per_symbol == {
        "BTC": 2188,
        "LTC": 2188,
        "XRP": 2090,
        "XLM": 1724,
        "USDT": 1515,
        "ETH": 1357,
        "EOS": 663,
        "BCH": 641,
        "BNB": 639,
        "ADA": 571,
    }
    names = {r.symbol: r.name for r in result.records}
    assert names["BNB"] == "binance-coin"
    assert names["XRP"] == "ripple"
    xrp = {r.source_timestamp: r for r in result.records if r.symbol == "XRP"}
    first = xrp[utc(2019, 4, 24)]  # ripple,2019-04-24,0.321114,0.321282,0.296982,0.302318,...
    assert first.price == 0.302318
    assert first.market_cap == 12698877293.0
    # "volume" says no unit: not stored (both fields empty), said once with the option.
    assert {(r.volume_base, r.volume_quote) for r in result.records} == {(None, None)}
    assert sum("volume_unit=base|quote" in w for w in result.warnings) == 1
    # 12 blank market caps.
    assert sum(r.market_cap is None for r in result.records) == 12
    ada = {r.source_timestamp: r for r in result.records if r.symbol == "ADA"}
    assert ada[utc(2017, 10, 1)].market_cap is None  # cardano,2017-10-01,...,50068700,
    # Each coin is its own daily series.
    assert {r.interval for r in result.records} == {"1d"}


async def test_kaggle_coin_bitcoin_ddmmyy_is_day_first(csv_dir: Path) -> None:
    path = csv_dir / KAGGLE_BTC
    result = await read(path)
    assert len(result.records) == 2984
    assert not result.rejects
    dates = [r.source_timestamp for r in result.records]
    assert dates[0] == utc(2013, 5, 1)  # "01-05-13": ambiguous on its own
    assert dates[11] == utc(2013, 5, 12)  # "12-05-13"
    assert dates[12] == utc(2013, 5, 13)  # "13-05-13" decides: day-first
    assert dates[-1] == utc(2021, 7, 1)  # "01-07-21"
    assert dates == sorted(dates)
    assert len(set(dates)) == len(dates)
    first, last = result.records[0], result.records[-1]
    assert (first.symbol, first.name) == ("BTC", "Bitcoin")
    assert first.price == 116.9899979
    assert first.market_cap == 1298954594.0
    assert last.market_cap == 6.29e11  # "6.29E+11": a market cap in exponent form is fine
    assert all(r.volume_base is None and r.volume_quote is None for r in result.records)
    state = result.state(path)
    assert state["date_order"] == "dmy"
    assert state["date_order_from"] == "data"


async def test_blockchain_info_mdyy_and_zero_prices(csv_dir: Path) -> None:
    path = csv_dir / BLOCKCHAIN
    result = await read(path)
    assert len(result.records) == 2694
    assert len(result.rejects) == 591
    assert {r.reason for r in result.rejects} == {"non-positive price in column 'Value': '0'"}
    rows = by_time(result.records)
    assert rows[utc(2017, 12, 31)].price_usd == 13215.57
    assert rows[utc(2010, 8, 17)].price == 0.0769
    assert min(rows) == utc(2010, 8, 17)
    oldest_reject = max(result.rejects, key=lambda r: r.payload["line"])
    assert oldest_reject.payload["row"] == ["1/3/09", "0"]  # last line, no final newline
    assert oldest_reject.source_key == f"{path}:{oldest_reject.payload['line']}"
    assert result.state(path)["date_order"] == "mdy"


async def test_blockchain_info_without_a_symbol_is_a_file_level_reject(csv_dir: Path) -> None:
    path = csv_dir / BLOCKCHAIN
    result = await read(path, column_map="")
    assert not result.records
    (reject,) = result.rejects
    assert reject.source_key == f"{path}:0"
    assert "no symbol column" in reject.reason
    assert str(path) in reject.reason
    assert any("file rejected" in w for w in result.warnings)


async def test_yahoo_finance_clean_baseline(csv_dir: Path) -> None:
    path = csv_dir / YAHOO
    result = await read(path, batch_size=500)
    assert len(result.records) == 3143
    assert not result.rejects
    assert len(result.batches) == 7
    first = result.records[0]  # 2014-09-17,465.864014,468.174011,452.421997,457.334015,...
    assert first.source_timestamp == utc(2014, 9, 17)
    assert (first.venue, first.quote, first.interval) == ("yahoo", "USD", "1d")
    assert first.price == first.price_usd == 457.334015  # Close, not Adj Close
    assert (first.open, first.low) == (465.864014, 452.421997)
    assert (first.volume_base, first.volume_quote) == (None, None)  # "Volume": unit not said
    last = result.records[-1]
    assert last.source_timestamp == utc(2023, 4, 25)
    assert last.price == 28246.691406
    assert result.state(path)["last_timestamp"] == "2023-04-25T00:00:00Z"


async def test_legacy_series_puts_old_rows_where_a_reread_lands(csv_dir: Path) -> None:
    # What the old code stored for a row of each file -> the series the new source derives.
    old_symbols = {BITFINEX: ("BTC", {"symbol_raw": "BTC/USD", "quote": "USD"})}
    declared = {BLOCKCHAIN: "USD"}
    for path in sorted(csv_dir.glob("*.csv")):
        result = await read(path)
        header = result.batches[0].raw[0].payload["header"]
        record = result.records[0]
        symbol, metadata = old_symbols.get(path.name, (record.symbol, {}))
        guess = legacy_series(path.name, header, symbol, metadata)
        assert (guess.venue, guess.symbol) == (record.venue, record.symbol), path.name
        assert (guess.quote or declared.get(path.name)) == record.quote, path.name
        assert not guess.reread
    bitfinex_header = (await read(csv_dir / BITFINEX)).batches[0].raw[0].payload["header"]
    assert legacy_series(BITFINEX, bitfinex_header, "BTC", {"quote": "USD"}).volume_unit == "quote"
    investing_header = ["Date", "Price", "Open", "High", "Low", "Vol.", "Change %"]
    assert legacy_series(INVESTING, investing_header, "BTC", {}).volume_unit == "base"
    yahoo_header = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
    assert legacy_series(YAHOO, yahoo_header, "BTC", {}).volume_unit is None
