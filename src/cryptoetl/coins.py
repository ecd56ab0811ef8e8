"""The well-known coins: one list (``coins.json``) for every part that needs to recognise a coin.

* the asset seed (``pipeline/assets.py``): one canonical asset per coin, with its CoinGecko and
  CoinPaprika ids, so the same coin from every source lands on one asset;
* news mentions: ``news_terms`` are matched case-sensitively on word boundaries in headlines
  ("DOT Sinks 2%" names Polkadot, "dot" in a URL does not). A ticker is a term only where it is
  unambiguous in upper case (``OP`` and ``APT`` are not: op-eds, hacker groups);
* the CSV source: ``names`` (lower case) turn a coin name in a currency column or a file name
  into its ticker; ``ticker_in_file_names`` is false where the lower-case ticker is an everyday
  word or abbreviation (``link``, ``dot``, ``uni``, ``etc``, ``near`` …) and
  ``name_in_file_names`` false where the name is (``dash``, ``neo``, ``iota`` …): a file called
  ``dash_export.csv`` names no coin.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import msgspec


class KnownCoin(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    symbol: str
    name: str
    coingecko: str
    coinpaprika: str
    names: tuple[str, ...] = ()
    news_terms: tuple[str, ...] = ()
    ticker_in_file_names: bool = True
    name_in_file_names: bool = True


@cache
def known_coins() -> tuple[KnownCoin, ...]:
    data = resources.files("cryptoetl").joinpath("coins.json").read_bytes()
    return msgspec.json.decode(data, type=tuple[KnownCoin, ...])


@cache
def ticker_by_name() -> dict[str, str]:
    """Lower-case coin names and slugs -> ticker (``"bitcoin cash"``/``"bitcoin-cash"`` -> BCH)."""
    return {name: coin.symbol for coin in known_coins() for name in coin.names}


@cache
def known_tickers() -> frozenset[str]:
    return frozenset(coin.symbol for coin in known_coins())
