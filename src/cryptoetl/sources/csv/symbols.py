"""Tickers, pairs and coin names: what a symbol cell or a file name says about base and quote.

* A **pair** names a base and a quote: ``BTC/USD``, ``BTC-USDT``, ``ETH_BTC`` (a separator and a
  known quote currency after it) or ``BTCUSDT``, ``ETCBTC`` (a known quote as the suffix). A
  concatenated pair is split only where the rest is a well-known ticker, or, for the common
  quotes USD/USDT/USDC/EUR, at least 3 characters long: ``BUSD``, ``TUSD``, ``WBTC``, ``STETH``
  are coins of their own, not pairs. Anything else is a plain ticker: its quote is unknown.
* **Coin names** (``bitcoin``, ``Bitcoin Cash``, ``binance-coin``) map to tickers through the
  well-known coins of :mod:`cryptoetl.coins`.
* A **file name** is split into alphanumeric tokens; it names a coin when exactly one
  well-known coin appears (as a name, a ticker that is not an everyday word, or the base of a
  concatenated pair), a quote when exactly one fiat or stablecoin token appears besides it (or
  a concatenated pair carries one), and a venue when exactly one exchange (else exactly one
  aggregator) token appears. ``solana-usdt-1h`` is SOL quoted in USDT; ``btc_eth_ratio`` names
  no coin (two); a crypto quote in a file name is only read from a concatenated pair
  (``Kraken_ETCBTC_d``), never from two separate coin tokens.
"""

from __future__ import annotations

import os
import re
from typing import Final, NamedTuple

from cryptoetl.coins import known_coins, known_tickers, ticker_by_name

# fmt: off
FIAT: Final = frozenset({
    "USD", "EUR", "GBP", "JPY", "KRW", "AUD", "CAD", "CHF", "CNY", "HKD", "SGD", "TRY", "BRL",
    "RUB", "INR", "MXN", "ZAR", "PLN", "SEK", "NOK", "DKK", "NZD", "IDR", "UAH", "NGN", "ARS",
})
STABLECOINS: Final = frozenset({
    "USDT", "USDC", "BUSD", "DAI", "TUSD", "FDUSD", "USDP", "PAX", "UST", "USDD", "PYUSD",
    "EURT",
})
# fmt: on
CRYPTO_QUOTES: Final = frozenset({"BTC", "ETH", "BNB"})
QUOTE_CURRENCIES: Final = FIAT | STABLECOINS | CRYPTO_QUOTES
# Quotes whose base, in a concatenated pair, may be any ticker of 3+ characters.
_COMMON_QUOTES: Final = frozenset({"USD", "USDT", "USDC", "EUR"})
# Longest first, so BTCUSDT is BTC+USDT and not BTCU+SDT or BTC+USD+T.
_SUFFIXES: Final = tuple(sorted(QUOTE_CURRENCIES, key=len, reverse=True))
_PAIR_SEPARATORS: Final = "/-_: "
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9]+")

# Token (lower case) in a file name or banner -> venue. Exchanges are where a price was made;
# aggregators republish them (an Investing.com page of Bitfinex's BTC/USD is Bitfinex's).
# fmt: off
EXCHANGES: Final[dict[str, str]] = {
    name: name for name in (
        "binance", "binanceus", "gemini", "kraken", "bitfinex", "bitstamp", "coinbase",
        "bittrex", "poloniex", "okx", "okex", "huobi", "kucoin", "bybit", "bitmex", "deribit",
        "bithumb", "upbit", "ftx", "hitbtc", "exmo", "gateio",
    )
}
AGGREGATORS: Final[dict[str, str]] = {
    "coinmarketcap": "coinmarketcap", "coingecko": "coingecko", "investing": "investing.com",
    "yahoo": "yahoo", "cryptocompare": "cryptocompare", "coinpaprika": "coinpaprika",
}
# fmt: on


class FileNameFacts(NamedTuple):
    base: str | None
    quote: str | None
    venue: str | None


def _splits_concatenated(base: str, quote: str) -> bool:
    return base in known_tickers() or (quote in _COMMON_QUOTES and len(base) >= 3)


def split_pair(ticker: str) -> tuple[str, str | None]:
    """(base, quote) of an upper-case ticker or pair; the quote is None for a plain ticker."""
    for sep in _PAIR_SEPARATORS:
        if sep in ticker:
            base, _, quote = ticker.partition(sep)
            base, quote = base.strip(), quote.strip()
            if base and quote in QUOTE_CURRENCIES:
                return base, quote
            return ticker, None
    for quote in _SUFFIXES:
        if ticker.endswith(quote) and len(ticker) > len(quote):
            base = ticker[: -len(quote)]
            if _splits_concatenated(base, quote):
                return base, quote
    return ticker, None


def normalize_symbol(raw: str) -> str:
    """The base ticker of a ticker or pair: ``BTC/USD``, ``BTCUSDT``, ``btc`` -> ``BTC``."""
    return split_pair(raw.strip().upper())[0]


def coin_for_name(name: str) -> str | None:
    """The ticker of a well-known coin name or slug (``Bitcoin Cash``, ``bitcoin-cash``)."""
    key = " ".join(name.strip().lower().split())
    names = ticker_by_name()
    return names.get(key) or names.get(key.replace(" ", "-"))


def _file_name_words() -> tuple[dict[str, str], frozenset[str]]:
    """Names (lower case, '-' joined) and tickers that may be trusted in a file name."""
    names: dict[str, str] = {}
    tickers: set[str] = set()
    for coin in known_coins():
        if coin.name_in_file_names:
            for name in coin.names:
                names["-".join(name.split())] = coin.symbol
        if coin.ticker_in_file_names:
            tickers.add(coin.symbol)
    return names, frozenset(tickers)


def _venue_of(tokens: list[str]) -> str | None:
    exchanges = {EXCHANGES[t] for t in tokens if t in EXCHANGES}
    if exchanges:
        return exchanges.pop() if len(exchanges) == 1 else None
    aggregators = {AGGREGATORS[t] for t in tokens if t in AGGREGATORS}
    return aggregators.pop() if len(aggregators) == 1 else None


def venue_from_text(text: str) -> str | None:
    """The one venue a banner line or file name names (an exchange before an aggregator)."""
    return _venue_of([t.lower() for t in _TOKEN_RE.findall(text)])


def facts_from_file_name(file_name: str) -> FileNameFacts:
    """Base coin, quote and venue a file name clearly names (see the module doc)."""
    stem = os.path.splitext(os.path.basename(file_name))[0]
    tokens = [t.lower() for t in _TOKEN_RE.findall(stem)]
    names, safe_tickers = _file_name_words()
    coins: list[tuple[int, str]] = []  # (token position, ticker)
    pair_quotes: set[str] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        two_words = f"{token}-{tokens[i + 1]}" if i + 1 < len(tokens) else ""
        if two_words in names:  # "bitcoin_cash" is BCH, not BTC
            coins.append((i, names[two_words]))
            i += 2
            continue
        upper = token.upper()
        base, quote = split_pair(upper)
        if token in names:
            coins.append((i, names[token]))
        elif upper in safe_tickers:
            coins.append((i, upper))
        elif quote is not None and base in known_tickers():
            coins.append((i, base))
            pair_quotes.add(quote)
        i += 1
    return FileNameFacts(*_base_and_quote(tokens, coins, pair_quotes), _venue_of(tokens))


def _base_and_quote(
    tokens: list[str], coins: list[tuple[int, str]], pair_quotes: set[str]
) -> tuple[str | None, str | None]:
    found = {ticker for _, ticker in coins}
    if len(found) > 1:
        found -= STABLECOINS  # "solana-usdt-1h": the stablecoin is the quote of the pair
    if len(found) != 1:
        return None, None
    base = found.pop()
    # Quote tokens: fiat or stablecoins other than the base, anywhere in the name.
    quotes = {t.upper() for t in tokens if t.upper() in FIAT | STABLECOINS} - {base}
    quotes |= pair_quotes
    return base, quotes.pop() if len(quotes) == 1 else None
