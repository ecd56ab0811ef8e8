"""Market series: venue, quote and interval of a file, and the rows of the old code."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cryptoetl.sources.base import MarketRecord
from cryptoetl.sources.csv import interval_from_timestamps, legacy_series
from cryptoetl.sources.csv.series import (
    Declared,
    candle_interval,
    decide_series,
    interval_name,
    parse_interval,
)

from .support import by_time, identity, records, rejects, run, source, utc, warnings, write

SERIES = Path(__file__).parents[4] / "fixtures" / "csv" / "series"
CMC_FILE = "Bitcoin_12_1_2023-12_8_2023_historical_data_coinmarketcap.csv"


# ---------------------------------------------------------------------------------------------
# intervals
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "name"),
    [
        (60, "1m"),
        (900, "15m"),
        (3600, "1h"),
        (14400, "4h"),
        (86400, "1d"),
        (259200, "3d"),
        (604800, "1w"),
        (1209600, "2w"),
        (5400, "90m"),
        (37, "37s"),
    ],
)
def test_interval_name(seconds: int, name: str) -> None:
    assert interval_name(seconds) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("1h", "1h"),
        ("60m", "1h"),
        ("1H", "1h"),
        ("24h", "1d"),
        ("1D", "1d"),
        ("7d", "1w"),
        ("daily", "1d"),
        ("Hourly", "1h"),
        ("5m", "5m"),
    ],
)
def test_parse_interval(text: str, name: str) -> None:
    assert parse_interval(text) == name


@pytest.mark.parametrize("text", ["", "0h", "1M", "1y", "h", "1.5h", "fortnightly"])
def test_parse_interval_refuses_what_it_cannot_know(text: str) -> None:
    with pytest.raises(ValueError, match="not an interval"):
        parse_interval(text)


def test_interval_from_timestamps() -> None:
    hours = [utc(2021, 1, 1) + timedelta(hours=h) for h in range(48)]
    assert interval_from_timestamps(hours) == "1h"
    # Missing candles leave gaps of whole multiples: still hourly.
    assert interval_from_timestamps([t for i, t in enumerate(hours) if i % 7 != 3]) == "1h"
    # Repeated timestamps (the same row twice) are no gap.
    assert interval_from_timestamps(sorted(hours + hours[:5])) == "1h"
    days = [utc(2021, 1, 1) + timedelta(days=d) for d in range(10)]
    assert interval_from_timestamps(days) == "1d"
    assert interval_from_timestamps(days[:3]) == "1d"
    assert interval_from_timestamps(days[:2]) is None  # one gap is no evidence
    assert interval_from_timestamps(days[:1]) is None
    jitter = [utc(2021, 1, 1) + timedelta(seconds=s) for s in (0, 61, 119, 185, 240, 301)]
    assert interval_from_timestamps(jitter) is None
    half_seconds = [utc(2021, 1, 1) + timedelta(milliseconds=500 * i) for i in range(5)]
    assert interval_from_timestamps(half_seconds) is None


def test_candle_interval_rounds_a_close_stamped_just_before_the_next_open() -> None:
    day = 86_400_000
    assert candle_interval([day - 1] * 5) == "1d"  # CoinMarketCap: 23:59:59.999
    assert candle_interval([3_600_000] * 3) == "1h"
    assert candle_interval([day - 1, 3_600_000, 60_000]) is None


def test_decide_series_order_and_how() -> None:
    facts, said = decide_series(
        file_name="Binance_BTCUSDT_d.csv",
        declared=Declared(),
        banner_venue="gemini",
        layout_venue=None,
        header_quote=None,
        candle=None,
        spacing=("1d", "row spacing"),
    )
    assert (facts.venue, facts.quote, facts.interval) == ("binance", "USDT", "1d")
    assert facts.info == {"venue": "file name", "quote": "file name", "interval": "row spacing"}
    assert not said
    facts, _ = decide_series(
        file_name="export.csv",
        declared=Declared(),
        banner_venue=None,
        layout_venue=None,
        header_quote="EUR",
        candle=None,
        spacing=(None, "unknown (irregular row spacing)"),
    )
    assert (facts.venue, facts.quote, facts.interval) == ("file:export", "EUR", None)
    assert facts.info == {
        "venue": "derived from the file name",
        "quote": "header",
        "interval": "unknown (irregular row spacing)",
    }


# ---------------------------------------------------------------------------------------------
# series of our fixture files
# ---------------------------------------------------------------------------------------------


async def test_two_venues_and_two_intervals_of_one_coin_never_meet() -> None:
    binance, gemini = SERIES / "Binance_BTCUSDT_d.csv", SERIES / "Gemini_BTCUSD_1h.csv"
    recs = records(await run(source(binance, gemini)))
    midnight = [r for r in recs if r.source_timestamp == utc(2020, 12, 30)]
    assert len(midnight) == 2  # the same coin and instant, in two series
    daily, hourly = sorted(midnight, key=lambda r: r.venue)
    assert (daily.venue, daily.symbol, daily.quote, daily.interval) == (
        "binance",
        "BTC",
        "USDT",
        "1d",
    )
    assert (hourly.venue, hourly.symbol, hourly.quote, hourly.interval) == (
        "gemini",
        "BTC",
        "USD",
        "1h",
    )
    assert identity(daily) != identity(hourly)
    assert len({identity(r) for r in recs}) == len(recs) == 5 + 8
    # A USDT price is never a USD price (stablecoins depeg); Gemini's is.
    assert daily.price_usd is None
    assert hourly.price_usd == hourly.price == 27650.0
    assert daily.series_info == {
        "venue": "file name",
        "quote": "symbol pair",
        "interval": "row spacing",
    }
    # One series_info object per series, not one per row.
    assert len({id(r.series_info) for r in recs if r.venue == "binance"}) == 1


async def test_two_exports_of_one_series_share_identities(tmp_path: Path) -> None:
    def export(name: str, days: range, price: int) -> Path:
        rows = "".join(f"2020-12-{day},BTC/USDT,{price + day}\n" for day in days)
        return write(tmp_path / name, "Date,Symbol,Close\n" + rows)

    first = export("Binance_BTCUSDT_d.csv", range(20, 24), 100)
    later = export("binance_btcusdt_daily_2021.csv", range(22, 26), 200)
    recs = records(await run(source(first, later)))
    assert {r.venue for r in recs} == {"binance"}
    keys = [identity(r) for r in recs]
    assert len(keys) == 8
    assert len(set(keys)) == 6  # two days are in both exports: the store upserts them


async def test_a_btc_quoted_pair_keeps_its_quote() -> None:
    batches = await run(source(SERIES / "Binance_ETCBTC_d.csv"))
    recs = by_time(records(batches))
    row = recs[utc(2020, 12, 31)]
    assert (row.symbol, row.quote, row.venue, row.interval) == ("ETC", "BTC", "binance", "1d")
    assert row.price == 0.000207  # in BTC ...
    assert row.open == 0.0002085
    assert row.price_usd is None  # ... and so never a USD price
    assert row.volume_base == 35500.0  # "Volume ETC"
    assert row.volume_quote == 7.3485  # "Volume BTC"
    assert not rejects(batches)


async def test_coinmarketcap_export(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "series" / CMC_FILE
    batches = await run(source(path))
    recs = by_time(records(batches))
    assert len(recs) == 8
    assert not rejects(batches)
    first = recs[utc(2023, 12, 1)]  # keyed on timeOpen, not on the close "timestamp"
    assert (first.symbol, first.name) == ("BTC", None)  # the coin from the file name, not "2781"
    assert (first.venue, first.quote, first.interval) == ("coinmarketcap", "USD", "1d")
    assert first.price == first.price_usd == 38000.37
    assert (first.open, first.high, first.low) == (37500.37, 38420.87, 37270.12)
    assert first.volume_quote == 21000000000.0  # CoinMarketCap's volume is in the convert currency
    assert first.volume_base is None
    assert first.market_cap == 742907233500.0
    assert first.series_info == {
        "venue": "file name",
        "quote": "quote column",
        "interval": "candle length",
    }
    assert not [w for w in warnings(batches) if "unknown" in w]


async def test_an_unknown_coinmarketcap_convert_id_leaves_the_quote_unknown(tmp_path: Path) -> None:
    text = (SERIES / CMC_FILE).read_text().replace('"2781"', '"2790"')
    path = write(tmp_path / CMC_FILE, text)
    batches = await run(source(path))
    assert {r.quote for r in records(batches)} == {None}
    assert any("quote currency id '2790' is not known" in w for w in warnings(batches))


async def test_an_unknown_interval_is_said_once(tmp_path: Path) -> None:
    # Trades at whole minutes, most of them not one minute apart: no candle series.
    body = "".join(f"2021-01-01 00:{m:02d}:00,{m + 1}\n" for m in (0, 1, 3, 4, 9, 17, 18, 30))
    batches = await run(source(write(tmp_path / "btc_ticks.csv", "Date,Close\n" + body)))
    assert {r.interval for r in records(batches)} == {None}
    said = [w for w in warnings(batches) if "the interval of" in w]
    assert said == [
        f"csv: {tmp_path / 'btc_ticks.csv'}: the interval of the rows is unknown (irregular row "
        "spacing): stored without one; declare it with CSV_COLUMN_MAP=btc_ticks.csv:interval="
        "<1h|1d|...>"
    ]


# ---------------------------------------------------------------------------------------------
# legacy_series: rows of the old code into the series the new source derives
# ---------------------------------------------------------------------------------------------


def test_legacy_series_of_a_pair_split_by_the_old_code() -> None:
    header = ["unix", "date", "symbol", "open", "high", "low", "close", "Volume USD", "Volume BTC"]
    meta = {
        "open": 1.0,
        "file": "Bitfinex_BTCUSD_d.csv",
        "line": 2,
        "symbol_raw": "BTC/USD",
        "quote": "USD",
    }
    guess = legacy_series("Bitfinex_BTCUSD_d.csv", header, "BTC", meta)
    assert (guess.venue, guess.quote, guess.symbol, guess.interval) == (
        "bitfinex",
        "USD",
        "BTC",
        None,
    )
    assert guess.volume_unit == "quote"  # the old code stored "Volume USD"
    assert guess.info == {"venue": "file name", "quote": "symbol pair"}
    assert not guess.reread


def test_legacy_series_of_a_btc_quoted_pair_kept_whole_by_the_old_code() -> None:
    header = ["Unix", "Date", "Symbol", "Open", "High", "Low", "Close", "Volume ETC", "Volume BTC"]
    guess = legacy_series("Binance_ETCBTC_d.csv", header, "ETC/BTC", {"file": "x", "line": 3})
    assert (guess.symbol, guess.quote, guess.venue) == ("ETC", "BTC", "binance")
    assert guess.volume_unit is None  # the old code found no volume column it would take


def test_legacy_series_of_a_coinmarketcap_export() -> None:
    header = (
        "timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;timestamp"
    )
    guess = legacy_series(CMC_FILE, header.split(";"), "2781", {"file": CMC_FILE, "line": 2})
    assert (guess.symbol, guess.quote, guess.venue) == ("BTC", "USD", "coinmarketcap")
    assert guess.volume_unit == "quote"
    assert guess.reread  # the old rows are keyed on the close time: re-ingest, do not move


def test_legacy_series_matches_what_the_source_derives() -> None:
    # The migration must put old rows exactly where a re-read will upsert.
    for name, header, symbol in [
        (
            "Gemini_BTCUSD_1h.csv",
            ["Unix Timestamp", "Date", "Symbol", "Open", "High", "Low", "Close", "Volume"],
            "BTC",
        ),
        (
            "eth_investing_messy.csv",
            ["Date", "Price", "Open", "High", "Low", "Vol.", "Change %"],
            "ETH",
        ),
        ("multi_coin.csv", ["symbol", "date", "price", "market_cap", "volume"], "SOL"),
    ]:
        guess = legacy_series(name, header, symbol, {})
        assert guess.venue in ("gemini", "investing.com", "file:multi_coin")
    assert (
        legacy_series(
            "eth_investing_messy.csv",
            ["Date", "Price", "Open", "High", "Low", "Vol.", "Change %"],
            "ETH",
            {},
        ).volume_unit
        == "base"
    )
    assert legacy_series("x.csv", None, "BTC", {}).venue == "file:x"
    declared = Declared(venue="kraken", quote="EUR")
    guess = legacy_series("x.csv", ["Date", "Close"], "BTC", {}, declared)
    assert (guess.venue, guess.quote) == ("kraken", "EUR")


def _as_the_old_code_stored(record: MarketRecord) -> tuple[str, dict[str, str]]:
    """(symbol, metadata) the old code gave this row: it split USD/USDT/USDC/EUR pairs (and
    said so in metadata), kept other pairs whole, and took CoinMarketCap's "name" (2781)."""
    how = (record.series_info or {}).get("quote")
    if how == "quote column":
        return "2781", {}
    if how == "symbol pair" and record.quote is not None:
        if record.quote in ("USD", "USDT", "USDC", "EUR"):
            return record.symbol, {"quote": record.quote}
        return f"{record.symbol}/{record.quote}", {}
    return record.symbol, {}


async def test_legacy_series_agrees_with_a_read_of_each_fixture(fixtures_dir: Path) -> None:
    for path in sorted([*(fixtures_dir / "csv").glob("*.csv"), *SERIES.glob("*.csv")]):
        if path.name == "market-price.csv":
            continue  # headerless: the old code could not ingest it
        batches = await run(source(path))
        header = batches[0].raw[0].payload["header"]
        for record in records(batches):
            old_symbol, old_metadata = _as_the_old_code_stored(record)
            guess = legacy_series(path.name, header, old_symbol, old_metadata)
            assert (guess.venue, guess.symbol, guess.quote) == (
                record.venue,
                record.symbol,
                record.quote,
            ), path.name


def test_legacy_series_with_todays_column_map() -> None:
    header = ["Day", "Kurs", "Volume"]
    guess = legacy_series(
        "feed.csv",
        header,
        "SOL",
        {"symbol_from": "CSV_COLUMN_MAP"},
        Declared(quote="EUR"),
        columns={"date": "Day", "price": "Kurs"},
        volume_unit="base",
    )
    assert (guess.venue, guess.symbol, guess.quote, guess.volume_unit) == (
        "file:feed",
        "SOL",
        "EUR",
        "base",
    )
    # A header the new source cannot read at all: only the file name speaks.
    assert legacy_series("btc_usd.csv", ["foo", "bar"], "BTC", {}).venue == "file:btc_usd"
