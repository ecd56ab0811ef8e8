"""One module per upstream; :func:`build_sources` is the only place that knows them all."""

from __future__ import annotations

from cryptoetl.config import Settings
from cryptoetl.sources.base import Source, SourceType
from cryptoetl.sources.coingecko import CoinGeckoSource
from cryptoetl.sources.coinpaprika import CoinPaprikaSource
from cryptoetl.sources.csv import CsvSource
from cryptoetl.sources.http import HttpClient
from cryptoetl.sources.rss import RssSource


def build_sources(settings: Settings, http: HttpClient) -> dict[SourceType, Source]:
    """Every enabled source, keyed by its source_type."""
    available: dict[SourceType, Source] = {
        "csv": CsvSource(settings),
        "coinpaprika": CoinPaprikaSource(settings, http),
        "coingecko": CoinGeckoSource(settings, http),
        "rss": RssSource(settings, http),
    }
    return {name: src for name, src in available.items() if name in settings.enabled_sources}
