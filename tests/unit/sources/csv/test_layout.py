"""Layout detection: columns, unit tags and known layouts (sources/csv/layout.py)."""

from __future__ import annotations

import pytest

from cryptoetl.sources.base import SourceError
from cryptoetl.sources.csv.layout import detect_layout, looks_like_header, norm_header

CMC_HEADER = [
    "timeOpen",
    "timeClose",
    "timeHigh",
    "timeLow",
    "name",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "marketCap",
    "timestamp",
]


def test_header_normalisation() -> None:
    assert norm_header("\ufeffDate(UTC)") == "date utc"
    assert norm_header("timeOpen") == "time open"
    assert norm_header("marketCap") == "market cap"
    assert norm_header("Close**") == "close"
    assert norm_header("Volume_BTC") == "volume btc"


def test_layout_yahoo_prefers_close_over_adj_close() -> None:
    header = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
    layout = detect_layout(header, "/x/BTC-USD.csv")
    assert (layout.date, layout.price, layout.volumes) == (0, 4, ((6, None),))
    assert (layout.open, layout.high, layout.low) == (1, 2, 3)
    assert (layout.default_symbol, layout.symbol_origin) == ("BTC", "file name")
    assert layout.volume_unit is None  # a plain "Volume" of an unknown layout: unit unknown


def test_layout_prefers_unix_and_tags_volumes_with_their_currency() -> None:
    header = ["unix", "date", "symbol", "open", "high", "low", "close", "Volume BTC", "Volume USD"]
    layout = detect_layout(header, "/x/any.csv")
    assert layout.date == 0
    assert layout.date_is_unix
    assert layout.date_fallback == 1
    assert layout.volumes == ((7, "BTC"), (8, "USD"))
    assert layout.symbol == 2
    assert layout.unit_of_volume(7, "BTC", "USD") == "base"
    assert layout.unit_of_volume(8, "BTC", "USD") == "quote"
    assert layout.unit_of_volume(8, "BTC", "USDT") is None  # USD is not USDT
    assert layout.unit_of_volume(8, "BTC", None) is None


def test_layout_aliases_case_and_punctuation() -> None:
    header = ["Date(UTC)", "Ticker", "Price (USD)", "market_cap", "Vol.", "Change %"]
    layout = detect_layout(header, "/x/any.csv")
    assert (layout.date, layout.symbol, layout.price, layout.market_cap) == (0, 1, 2, 3)
    assert (layout.volumes, layout.change) == (((4, None),), 5)
    assert layout.header_quote == "USD"  # the price column says its currency
    layout = detect_layout(["TIMESTAMP", "COIN", "VALUE", "MarketCap", "volume_24h"], "/x/a.csv")
    assert (layout.date, layout.name, layout.price, layout.market_cap) == (0, 1, 2, 3)
    assert layout.volumes == ((4, None),)
    assert layout.symbol == -1
    assert layout.default_symbol is None


def test_layout_open_high_low_in_the_price_currency() -> None:
    header = ["Date", "Close EUR", "Open USD", "Open EUR", "High EUR", "Low EUR"]
    layout = detect_layout(header, "/x/btc.csv")
    assert (layout.price, layout.open, layout.high, layout.low) == (1, 3, 4, 5)
    assert layout.header_quote == "EUR"


def test_layout_explicit_base_and_quote_volumes() -> None:
    header = ["time", "close", "volumefrom", "volumeto"]  # CryptoCompare
    layout = detect_layout(header, "/x/btc.csv")
    assert (layout.volume_base, layout.volume_quote, layout.volumes) == (2, 3, ())
    assert layout.unit_of_volume(2, "BTC", None) == "base"
    assert layout.unit_of_volume(3, "BTC", None) == "quote"


def test_layout_symbol_and_name_columns() -> None:
    layout = detect_layout(["SNo", "Name", "Symbol", "Date", "Close"], "/x/a.csv")
    assert (layout.name, layout.symbol) == (1, 2)


def test_coinmarketcap_export_is_a_known_layout() -> None:
    layout = detect_layout(
        CMC_HEADER, "/x/Bitcoin_1_1_2024-2_1_2024_historical_data_coinmarketcap.csv"
    )
    assert layout.known == "coinmarketcap"
    assert layout.date == 0  # timeOpen, not the close "timestamp"
    assert layout.close_time == 1
    assert (layout.name, layout.quote) == (-1, 4)  # "name" holds the convert currency id
    assert layout.quote_codes == {"2781": "USD"}
    assert (layout.default_symbol, layout.symbol_origin) == ("BTC", "file name")
    assert layout.venue == "coinmarketcap"
    assert layout.volume_unit == "quote"
    assert layout.market_cap == 10
    with pytest.raises(SourceError, match="no symbol column"):
        detect_layout(CMC_HEADER, "/x/export_coinmarketcap.csv")  # the coin is nowhere


@pytest.mark.parametrize(
    ("header", "known", "unit"),
    [
        (["snapped_at", "price", "market_cap", "total_volume"], "coingecko", "quote"),
        (["Date", "Price", "Open", "High", "Low", "Vol.", "Change %"], "investing.com", "base"),
    ],
)
def test_known_layouts_document_their_volume_unit(header: list[str], known: str, unit: str) -> None:
    layout = detect_layout(header, "/x/btc-usd-max.csv")
    assert (layout.known, layout.venue, layout.volume_unit) == (known, known, unit)
    assert layout.volume_unit_from == f"layout {known}"


def test_declared_volume_unit() -> None:
    layout = detect_layout(["Date", "Close", "Volume"], "/x/btc.csv", volume_unit="base")
    assert layout.unit_of_volume(2, "BTC", "USD") == "base"
    assert layout.volume_unit_from == "CSV_COLUMN_MAP"


def test_layout_without_date_or_value_is_an_error() -> None:
    with pytest.raises(SourceError, match="no recognisable date"):
        detect_layout(["Symbol", "Close"], "/x/a.csv")
    with pytest.raises(SourceError, match="no recognisable date"):
        detect_layout(["Date", "Symbol", "Comment"], "/x/a.csv")


def test_layout_without_symbol_names_the_file() -> None:
    with pytest.raises(SourceError, match=r"/x/prices\.csv: no symbol column.*CSV_COLUMN_MAP"):
        detect_layout(["Date", "Close"], "/x/prices.csv")


def test_layout_from_column_map() -> None:
    columns = {"date": "Day", "price": "Kurs"}
    layout = detect_layout(
        ["Kurs", "Day", "Close"], "/x/a.csv", columns=columns, default_symbol="ETH"
    )
    assert (layout.date, layout.price, layout.default_symbol) == (1, 0, "ETH")
    assert layout.symbol_origin == "CSV_COLUMN_MAP"
    with pytest.raises(SourceError, match="CSV_COLUMN_MAP maps price to column 'Wert'"):
        detect_layout(["Day", "Close"], "/x/a.csv", columns={"price": "Wert"})


def test_looks_like_header() -> None:
    assert looks_like_header(CMC_HEADER)
    assert looks_like_header(["Date", "Value"])
    assert not looks_like_header(["2017-12-27 00:00:00", "15838.07"])
    assert not looks_like_header(["https://www.CryptoDataDownload.com"])
    assert looks_like_header(["Day", "Kurs"], {"date": "Day", "price": "Kurs"})


def test_a_known_layout_with_an_extra_column_is_still_known() -> None:
    header = [*CMC_HEADER, "circulatingSupply"]
    layout = detect_layout(header, "/x/Bitcoin_coinmarketcap.csv")
    assert (layout.known, layout.quote, layout.name) == ("coinmarketcap", 4, -1)
