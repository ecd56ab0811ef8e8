"""One module per upstream; :func:`open_sources` is the only place that knows them all.

A source's module is imported only when the source is enabled, and the HTTP client only opened
when an enabled source needs it: a CSV-only worker (``worker --once --source csv``, the usual
unchanged re-run) never loads aiohttp, a fifth of its start-up.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from cryptoetl.config import Settings
from cryptoetl.sources.base import Source, SourceType

if TYPE_CHECKING:
    from cryptoetl.sources.http import HttpClient

# source_type -> (module, class, whether it reads over HTTP), in the order runs are listed.
_SOURCES: dict[SourceType, tuple[str, str, bool]] = {
    "csv": ("cryptoetl.sources.csv", "CsvSource", False),
    "coinpaprika": ("cryptoetl.sources.coinpaprika", "CoinPaprikaSource", True),
    "coingecko": ("cryptoetl.sources.coingecko", "CoinGeckoSource", True),
    "rss": ("cryptoetl.sources.rss", "RssSource", True),
}


def _enabled(settings: Settings) -> list[SourceType]:
    return [name for name in _SOURCES if name in settings.enabled_sources]


def build_sources(settings: Settings, http: HttpClient | None) -> dict[SourceType, Source]:
    """Every enabled source, keyed by its source_type (``http`` may be None when none of them
    reads over HTTP)."""
    sources: dict[SourceType, Source] = {}
    for name in _enabled(settings):
        module, class_name, over_http = _SOURCES[name]
        source_class: Any = getattr(importlib.import_module(module), class_name)
        if over_http:
            if http is None:
                raise ValueError(f"source {name} needs an HTTP client")
            sources[name] = source_class(settings, http)
        else:
            sources[name] = source_class(settings)
    return sources


@contextlib.asynccontextmanager
async def open_sources(settings: Settings) -> AsyncIterator[dict[SourceType, Source]]:
    """The enabled sources, sharing one HTTP client (opened only if one of them needs it)."""
    if not any(_SOURCES[name][2] for name in _enabled(settings)):
        yield build_sources(settings, None)
        return
    from cryptoetl.sources.http import HttpClient

    async with HttpClient(settings) as http:
        yield build_sources(settings, http)
