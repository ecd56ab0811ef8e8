"""Tickers, pairs, coin names and file names (sources/csv/symbols.py)."""

from __future__ import annotations

import pytest

from cryptoetl.coins import known_coins
from cryptoetl.sources.csv.symbols import (
    coin_for_name,
    facts_from_file_name,
    normalize_symbol,
    split_pair,
    venue_from_text,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("BTC/USD", ("BTC", "USD")),
        ("BTCUSD", ("BTC", "USD")),
        ("BTC", ("BTC", None)),
        ("ETH-USDT", ("ETH", "USDT")),
        ("XRPUSDC", ("XRP", "USDC")),
        ("BTC/EUR", ("BTC", "EUR")),
        ("SOLUSDT", ("SOL", "USDT")),
        ("ETC/BTC", ("ETC", "BTC")),  # a BTC-quoted pair: the quote is BTC, not USD
        ("ETCBTC", ("ETC", "BTC")),
        ("LINKETH", ("LINK", "ETH")),
        ("BTC_GBP", ("BTC", "GBP")),
        ("USDT", ("USDT", None)),
        # Coins of their own, not pairs: too short a base, or not a known one for crypto quotes
        ("BUSD", ("BUSD", None)),
        ("TUSD", ("TUSD", None)),
        ("WBTC", ("WBTC", None)),
        ("STETH", ("STETH", None)),
        ("WSTETH", ("WSTETH", None)),
        ("BTC-PERP", ("BTC-PERP", None)),  # not a quote currency: kept whole
    ],
)
def test_split_pair(raw: str, expected: tuple[str, str | None]) -> None:
    assert split_pair(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("btc", "BTC"), (" eth/usdt ", "ETH"), ("solusdt", "SOL")]
)
def test_normalize_symbol(raw: str, expected: str) -> None:
    assert normalize_symbol(raw) == expected


def test_coin_names_come_from_the_shared_coin_list() -> None:
    assert coin_for_name("Bitcoin Cash") == "BCH"
    assert coin_for_name("bitcoin-cash") == "BCH"
    assert coin_for_name("binance-coin") == "BNB"
    assert coin_for_name("nothing known") is None
    # Every name in coins.json resolves to its own coin.
    for coin in known_coins():
        for name in coin.names:
            assert coin_for_name(name) == coin.symbol


@pytest.mark.parametrize(
    ("name", "base", "quote", "venue"),
    [
        ("Bitcoin.csv", "BTC", None, None),
        ("BTC-USD.csv", "BTC", "USD", None),
        ("btc-usd-max.csv", "BTC", "USD", None),  # CoinGecko's export name
        ("coin_Bitcoin.csv", "BTC", None, None),
        ("BTCUSD.csv", "BTC", "USD", None),
        ("Binance_BTCUSDT_d.csv", "BTC", "USDT", "binance"),
        ("Gemini_BTCUSD_1h.csv", "BTC", "USD", "gemini"),
        ("Kraken_ETCBTC_d.csv", "ETC", "BTC", "kraken"),  # "etc" alone is a word; ETCBTC is not
        ("Bitfinex_ETHUSD_d.csv", "ETH", "USD", "bitfinex"),
        ("bitcoin_cash_daily.csv", "BCH", None, None),
        ("Bitcoin Historical Data - Investing.com.csv", "BTC", None, "investing.com"),
        ("BTC_USD Bitfinex Historical Data - Investing.com.csv", "BTC", "USD", "bitfinex"),
        (
            "Bitcoin_1_1_2024-2_1_2024_historical_data_coinmarketcap.csv",
            "BTC",
            None,
            "coinmarketcap",
        ),
        ("solana-usdt-1h.csv", "SOL", "USDT", None),
        ("usdt_daily.csv", "USDT", None, None),
        ("binance_vs_kraken_btc.csv", "BTC", None, None),  # two exchanges: no venue
        ("prices.csv", None, None, None),
        ("btc_eth_ratio.csv", None, None, None),  # two coins: neither is the file's coin
        ("link_list.csv", None, None, None),
        ("market_price.csv", None, None, None),
        ("dash_export.csv", None, None, None),
    ],
)
def test_facts_from_file_name(
    name: str, base: str | None, quote: str | None, venue: str | None
) -> None:
    assert facts_from_file_name(name) == (base, quote, venue)


def test_venue_from_banner_text() -> None:
    assert venue_from_text("https://www.CryptoDataDownload.com") is None  # a redistributor
    assert venue_from_text("Gemini BTCUSD hourly, from CryptoDataDownload") == "gemini"
    assert venue_from_text("Binance and Kraken") is None
