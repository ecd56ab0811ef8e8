"""Runs sources in a process of its own, so a test can measure what the fetch costs.

``python -m tests.integration.sources.fetch_child coingecko rss ...`` reads the settings from the
environment (as the worker does), logs like the worker (``configure_logging``), runs each named
source's ``batches`` to the end or to its error, and prints one last line ``RESULT {json}``:
per source the error (as the source raised it), counts, warnings, the last cursor, record
metadata and raw keys; the process's peak RSS, the peak of the Python memory allocated while
fetching (tracemalloc, started once the imports are done) and the wall time.

``CHILD_MAX_AS_BYTES`` caps the address space, so a regression (a bomb read whole) fails this
child with MemoryError instead of taking the machine's memory.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec

from cryptoetl.config import Settings, load_settings
from cryptoetl.logs import configure_logging
from cryptoetl.sources.base import Source, SourceError
from cryptoetl.sources.coingecko import CoinGeckoSource
from cryptoetl.sources.coinpaprika import CoinPaprikaSource
from cryptoetl.sources.http import HttpClient
from cryptoetl.sources.rss import RssSource

SOURCES = {"coingecko": CoinGeckoSource, "coinpaprika": CoinPaprikaSource, "rss": RssSource}


def peak_rss_mb() -> float:
    """This process's peak resident set size.

    ``VmHWM`` belongs to the process image, so it starts afresh at exec; ``ru_maxrss`` would
    also count the pages of the parent (pytest) that the child held between fork and exec.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


async def run_source(source: Source) -> dict[str, Any]:
    outcome: dict[str, Any] = {
        "error": None,
        "records": 0,
        "warnings": [],
        "cursor": None,
        "metadata": [],
        "raw_keys": [],
        "urls": [],
    }
    try:
        async for batch in source.batches({}, 100_000):
            outcome["records"] += len(batch.records)
            outcome["warnings"] += batch.warnings
            outcome["cursor"] = batch.cursor
            outcome["metadata"] += [record.metadata for record in batch.records]
            outcome["urls"] += [getattr(record, "url", None) for record in batch.records]
            outcome["raw_keys"] += [raw.source_key for raw in batch.raw]
    except SourceError as exc:
        outcome["error"] = str(exc)
    return outcome


async def main(names: list[str], settings: Settings) -> dict[str, Any]:
    async with HttpClient(settings, backoff_initial_s=0.01) as http:
        return {name: await run_source(SOURCES[name](settings, http)) for name in names}


if __name__ == "__main__":
    if cap := os.environ.get("CHILD_MAX_AS_BYTES"):
        resource.setrlimit(resource.RLIMIT_AS, (int(cap), int(cap)))
    settings = load_settings()
    configure_logging(settings)
    tracemalloc.start()
    started = time.monotonic()
    outcomes = asyncio.run(main(sys.argv[1:], settings))
    result = {
        "sources": outcomes,
        "elapsed_s": time.monotonic() - started,
        "traced_peak_mb": tracemalloc.get_traced_memory()[1] / 1024**2,
        "peak_rss_mb": peak_rss_mb(),
    }
    print("RESULT " + msgspec.json.encode(result).decode(), flush=True)
