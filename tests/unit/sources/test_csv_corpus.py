"""Every real-world CSV of the corpus through CsvSource, checked against facts of each file.

The files are read in place (never copied into the repo); see the corpus SOURCES.md.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cryptoetl.config import Settings
from cryptoetl.sources.base import Batch, MarketRecord
from cryptoetl.sources.csv_files import CsvSource

INVESTING = "investing_com_btc_daily_2010-2020_bom_quoted_k_m_suffixes.csv"
BITFINEX = "cryptodatadownload_bitfinex_btcusd_daily_mixed_unix_ms_and_s.csv"
KAGGLE_MULTI = "kaggle_consolidated_coin_data_multicoin_blank_volume.csv"
KAGGLE_BTC = "kaggle_coin_bitcoin_excel_resaved_ddmmyy.csv"
BLOCKCHAIN = "blockchain_info_market_price_mdyy_crlf.csv"
YAHOO = "yahoo_finance_btc_usd_daily_2014-2023.csv"
# blockchain.info's file names no coin: the operator says which one it is.
COLUMN_MAP = "blockchain_info_*.csv:default_symbol=BTC"


class Result(msgspec.Struct):
    batches: list[Batch]
    records: list[MarketRecord]
    rejects: list[Any]
    cursor: dict[str, Any]

    def state(self, path: Path) -> dict[str, Any]:
        return self.cursor["files"][str(path)]  # type: ignore[no-any-return]

    def by_line(self) -> dict[int, MarketRecord]:
        return {r.metadata["line"]: r for r in self.records}


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


async def read(path: Path, column_map: str = COLUMN_MAP, batch_size: int = 1000) -> Result:
    settings = Settings(
        database_url=None,
        api_database_url=None,
        csv_paths=(str(path),),
        csv_column_map=column_map,
    )
    batches = [b async for b in CsvSource(settings).batches({}, batch_size)]
    records = [r for b in batches for r in b.records if isinstance(r, MarketRecord)]
    assert len(records) == sum(len(b.records) for b in batches)
    rejects = [r for b in batches for r in b.rejects]
    assert sum(b.processed for b in batches) == len(records) + len(rejects)
    cursor = batches[-1].cursor
    assert cursor is not None
    return Result(batches, records, rejects, cursor)


@pytest.fixture(scope="module")
def csv_dir(corpus_dir: Path) -> Path:
    return corpus_dir / "csv"


async def test_every_corpus_file_parses(csv_dir: Path) -> None:
    files = sorted(csv_dir.glob("*.csv"))
    assert len(files) == 6
    settings = Settings(
        database_url=None,
        api_database_url=None,
        csv_paths=(str(csv_dir),),
        csv_column_map=COLUMN_MAP,
    )
    src = CsvSource(settings)
    batches = [b async for b in src.batches({}, 5000)]
    counts: Counter[str] = Counter()
    for batch in batches:
        for record in batch.records:
            assert isinstance(record, MarketRecord)
            counts[record.metadata["file"]] += 1
            assert record.source_timestamp.tzinfo is UTC
            assert (
                record.source_id == f"{record.symbol}:{record.source_timestamp:%Y-%m-%dT%H:%M:%S}Z"
            )
            assert record.price_usd is None or record.price_usd > 0
    assert counts == {
        INVESTING: 3468,
        BITFINEX: 2443,
        KAGGLE_MULTI: 13576,
        KAGGLE_BTC: 2984,
        BLOCKCHAIN: 2694,
        YAHOO: 3143,
    }
    cursor = batches[-1].cursor
    assert cursor is not None
    assert all(state["eof"] and state["error"] is None for state in cursor["files"].values())
    # A second run over the unchanged corpus does no work at all.
    assert [b async for b in src.batches(cursor, 5000)] == []


async def test_investing_com_bom_quotes_suffixes(csv_dir: Path) -> None:
    path = csv_dir / INVESTING
    result = await read(path)
    assert len(result.records) == 3468
    assert not result.rejects
    rows = result.by_line()
    newest = rows[2]  # "Jan 14, 2020","8,746.6","8,111.2","8,848.4","8,111.2","1.38M","7.83%"
    assert newest.source_timestamp == utc(2020, 1, 14)
    assert newest.symbol == "BTC"
    assert newest.metadata["symbol_from"] == "file name"
    assert newest.price_usd == 8746.6
    assert newest.metadata["open"] == 8111.2
    assert newest.metadata["high"] == 8848.4
    assert newest.volume_24h_usd == 1_380_000.0
    assert newest.change_24h_pct == 7.83
    jan13 = rows[3]  # ... "610.66K","-0.93%"
    assert jan13.source_timestamp == utc(2020, 1, 13)
    assert jan13.volume_24h_usd == 610_660.0
    assert jan13.change_24h_pct == -0.93
    placeholder = rows[3127]  # "Jun 25, 2011","17.5",...,"-","0.00%"
    assert placeholder.source_timestamp == utc(2011, 6, 25)
    assert placeholder.price_usd == 17.5
    assert placeholder.volume_24h_usd is None
    assert sum(r.volume_24h_usd is None for r in result.records) == 6
    oldest = rows[3469]  # the last line, without a final newline
    assert oldest.source_timestamp == utc(2010, 7, 18)
    assert oldest.price_usd == 0.1
    assert oldest.metadata["open"] == 0.0
    assert oldest.volume_24h_usd == 80.0
    # The header was read through the BOM; the raw rows are the cells as received.
    payload = result.batches[0].raw[0].payload
    assert payload["header"] == ["Date", "Price", "Open", "High", "Low", "Vol.", "Change %"]
    assert payload["rows"][0] == [
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
    rows = result.by_line()
    ms_row, s_row = rows[457], rows[458]  # 1595116800000 (ms) then 1595030400 (s)
    assert ms_row.source_timestamp == utc(2020, 7, 19)
    assert s_row.source_timestamp == utc(2020, 7, 18)
    assert rows[2].source_timestamp == utc(2021, 10, 17)  # newest first
    assert rows[2444].source_timestamp == utc(2015, 2, 9)
    assert rows[2].volume_24h_usd == 2278649.13919448  # "Volume USD", not "Volume BTC"
    assert rows[2].price_usd == 61048.0
    assert rows[2].symbol == "BTC"
    assert rows[2].metadata["symbol_raw"] == "BTC/USD"
    assert rows[2].metadata["quote"] == "USD"
    # Every unix value (either unit) agrees with the file's own text date column.
    years = Counter[int]()
    for batch in result.batches:
        for row, record in zip(batch.raw[0].payload["rows"], batch.records, strict=True):
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
    first = result.by_line()[2]  # ripple,2019-04-24,0.321114,0.321282,0.296982,0.302318,...
    assert first.source_id == "XRP:2019-04-24T00:00:00Z"
    assert first.price_usd == 0.302318
    assert first.volume_24h_usd == 1517791002.0
    assert first.market_cap_usd == 12698877293.0
    # 643 blank cells: 631 volumes and 12 market caps.
    assert sum(r.volume_24h_usd is None for r in result.records) == 631
    assert sum(r.market_cap_usd is None for r in result.records) == 12
    last = result.by_line()[13577]  # cardano,2017-10-01,...,50068700, (blank market cap)
    assert last.symbol == "ADA"
    assert last.market_cap_usd is None
    assert last.volume_24h_usd == 50068700.0


async def test_kaggle_coin_bitcoin_ddmmyy_is_day_first(csv_dir: Path) -> None:
    path = csv_dir / KAGGLE_BTC
    result = await read(path)
    assert len(result.records) == 2984
    assert not result.rejects
    rows = result.by_line()
    assert rows[2].source_timestamp == utc(2013, 5, 1)  # "01-05-13": ambiguous on its own
    assert rows[13].source_timestamp == utc(2013, 5, 12)  # "12-05-13"
    assert rows[14].source_timestamp == utc(2013, 5, 13)  # "13-05-13" decides: day-first
    assert rows[2985].source_timestamp == utc(2021, 7, 1)  # "01-07-21"
    assert rows[2].symbol == "BTC"
    assert rows[2].name == "Bitcoin"
    assert rows[2].price_usd == 116.9899979
    assert rows[2].market_cap_usd == 1298954594.0
    assert rows[2985].market_cap_usd == 6.29e11  # "6.29E+11"
    assert all(r.volume_24h_usd is None for r in result.records)  # no Volume column
    dates = [r.source_timestamp for r in result.records]
    assert dates == sorted(dates)
    assert len(set(dates)) == len(dates)
    state = result.state(path)
    assert state["date_order"] == "dmy"
    assert state["date_order_from"] == "data"


async def test_blockchain_info_mdyy_and_zero_prices(csv_dir: Path) -> None:
    path = csv_dir / BLOCKCHAIN
    result = await read(path)
    assert len(result.records) == 2694
    assert len(result.rejects) == 591
    assert {r.reason for r in result.rejects} == {"non-positive price in column 'Value': '0'"}
    rows = result.by_line()
    assert rows[2].source_timestamp == utc(2017, 12, 31)
    assert rows[2].price_usd == 13215.57
    assert rows[2695].source_timestamp == utc(2010, 8, 17)
    assert rows[2695].price_usd == 0.0769
    assert rows[2].symbol == "BTC"
    assert rows[2].metadata["symbol_from"] == "CSV_COLUMN_MAP"
    oldest_reject = max(result.rejects, key=lambda r: r.payload["line"])
    assert oldest_reject.payload["row"] == ["1/3/09", "0"]  # last line, no final newline
    assert result.state(path)["date_order"] == "mdy"


async def test_blockchain_info_without_a_symbol_is_a_file_level_reject(csv_dir: Path) -> None:
    path = csv_dir / BLOCKCHAIN
    result = await read(path, column_map="")
    assert not result.records
    (reject,) = result.rejects
    assert reject.source_key == str(path)
    assert "no symbol column" in reject.reason
    assert str(path) in reject.reason
    assert any("file rejected" in w for b in result.batches for w in b.warnings)


async def test_yahoo_finance_clean_baseline(csv_dir: Path) -> None:
    path = csv_dir / YAHOO
    result = await read(path, batch_size=500)
    assert len(result.records) == 3143
    assert not result.rejects
    assert len(result.batches) == 7
    rows = result.by_line()
    first = rows[2]  # 2014-09-17,465.864014,468.174011,452.421997,457.334015,457.334015,21056800
    assert first.source_id == "BTC:2014-09-17T00:00:00Z"
    assert first.price_usd == 457.334015
    assert first.volume_24h_usd == 21056800.0
    assert first.metadata["open"] == 465.864014
    assert first.metadata["low"] == 452.421997
    last = rows[3144]
    assert last.source_timestamp == utc(2023, 4, 25)
    assert last.price_usd == 28246.691406
    assert result.state(path)["last_timestamp"] == "2023-04-25T00:00:00Z"
