"""CSV files source: historical market data exported by exchanges, aggregators and spreadsheets.

Each file is streamed (memory does not grow with its size), checkpointed per batch, and its
rows become observations of market **series** (venue, base, quote, interval) in the units the
file gives. The rules live with the code that applies them:

* :mod:`.checkpoint` -- discovery (``CSV_PATHS``), per-file checkpoints, resume and re-read;
* :mod:`.stream` -- non-blocking opening, bounded lines, encoding, the delimiter;
* :mod:`.layout` -- header aliases, unit tags, known layouts (CoinMarketCap, CoinGecko,
  Investing.com);
* :mod:`.dates` -- timestamps, epochs (and Excel's imprecise ones), the day/month order;
* :mod:`.numbers` -- thousands separators, suffixes, placeholders;
* :mod:`.symbols` and :mod:`.series` -- pairs, coin names, file names; venue, quote and
  interval of a file, :func:`legacy_series` for rows of the old code;
* :mod:`.options` -- CSV_COLUMN_MAP;
* :mod:`.rows` and :mod:`.reader` -- rows to records and rejects, batches.

The README section "CSV files" is the user's view of all of them.
"""

from cryptoetl.sources.csv.options import ColumnMap, FileOptions, parse_column_map
from cryptoetl.sources.csv.series import (
    SeriesGuess,
    interval_from_timestamps,
    legacy_series,
)
from cryptoetl.sources.csv.source import CsvSource

__all__ = [
    "ColumnMap",
    "CsvSource",
    "FileOptions",
    "SeriesGuess",
    "interval_from_timestamps",
    "legacy_series",
    "parse_column_map",
]
