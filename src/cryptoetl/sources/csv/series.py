"""Market series of a CSV file: venue, quote currency and interval, and how each was found.

A series is (source, venue, base, quote, interval); a row's identity is its series and its
timestamp. For a CSV file the pipeline decides, in this order (the first that answers wins):

venue
    ``venue=`` in CSV_COLUMN_MAP; the file name (one exchange token, else one aggregator token:
    ``Binance_BTCUSDT_d.csv`` -> binance, ``..._coinmarketcap.csv`` -> coinmarketcap); a banner
    line above the header naming one; a known layout (CoinMarketCap, CoinGecko and Investing.com
    exports); else ``file:<file stem>`` -- two files of one unknown venue then stay apart
    until ``venue=`` says they are one.
quote
    ``quote=`` in CSV_COLUMN_MAP; the row's own symbol when it is a pair (``BTC/USDT``) or its
    quote column (CoinMarketCap's convert id ``2781`` is USD); the file name (``btc-usd-max``);
    the price column's header (``Close (USD)``); else unknown (None: the price is kept, but
    never as a USD price). USDT is never taken for USD: stablecoins depeg.
interval
    ``interval=`` in CSV_COLUMN_MAP; the candle length of files with a close-time column
    (``timeClose - timeOpen``, rounded up to whole seconds); the spacing of the rows
    (:func:`interval_from_timestamps`, over the first :data:`SAMPLE_ROWS` rows); else unknown.

A declared value always wins over detection (the operator knows the file); when detection
disagrees, a warning says so. The facts of a file are recorded in its checkpoint, so rows
appended later continue the same series even if detection would now see other rows; a full
re-read detects again.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from cryptoetl.sources.base import SourceError
from cryptoetl.sources.csv.layout import CsvLayout, VolumeUnit, detect_layout, norm_header
from cryptoetl.sources.csv.symbols import facts_from_file_name, split_pair

SAMPLE_ROWS: Final = 1000  # data rows whose timestamps decide a file's interval
MIN_GAPS: Final = 2  # a spacing seen once is no evidence: 3 timestamps of one series at least
_USUAL_SHARE: Final = 0.5  # share of gaps that must be the usual gap
_REGULAR_SHARE: Final = 0.9  # share of gaps that must be whole multiples of it
_UNITS: Final = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_UNIT_SECONDS: Final = {**dict(_UNITS), "H": 3_600, "D": 86_400, "W": 604_800}
_INTERVAL_WORDS: Final = {"minute": "1m", "hourly": "1h", "daily": "1d", "weekly": "1w"}
_INTERVAL_RE: Final = re.compile(r"([1-9][0-9]{0,5})([smhdwHDW])")


# --------------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------------


def interval_name(seconds: int) -> str:
    """Canonical name of a length in seconds: the largest unit that divides it (3600 -> 1h)."""
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("every length is a whole number of seconds")


def parse_interval(text: str) -> str:
    """A declared interval (``1h``, ``60m``, ``1D``, ``daily``) in canonical form; ValueError."""
    word = _INTERVAL_WORDS.get(text.strip().lower())
    match = _INTERVAL_RE.fullmatch(word or text.strip())
    if match is None:
        raise ValueError(f"not an interval: {text!r} (e.g. 1m, 15m, 1h, 4h, 1d, 1w)")
    return interval_name(int(match[1]) * _UNIT_SECONDS[match[2]])


def _dominant(lengths_ms: Sequence[int], *, multiples: bool) -> int | None:
    """The usual length, when at least 90% of ``lengths_ms`` are it -- or, with
    ``multiples``, when it is at least half of them and 90% are whole multiples of it
    (missing candles leave gaps of 2, 3 ... intervals; trades at random instants do not)."""
    counts = Counter(length for length in lengths_ms if length > 0)
    if not counts:
        return None
    usual = min(counts, key=lambda length: (-counts[length], length))
    share = counts[usual]
    if multiples and share >= _USUAL_SHARE * len(lengths_ms):
        share = sum(n for length, n in counts.items() if length % usual == 0)
    return usual if share >= _REGULAR_SHARE * len(lengths_ms) else None


def interval_from_gaps(gaps_ms: Sequence[int]) -> tuple[str | None, str]:
    """(interval, how) from the gaps between consecutive timestamps of each series."""
    if len(gaps_ms) < MIN_GAPS:
        return None, "unknown (too few rows)"
    usual = _dominant(gaps_ms, multiples=True)
    if usual is None or usual % 1000:
        return None, "unknown (irregular row spacing)"
    return interval_name(usual // 1000), "row spacing"


def interval_from_timestamps(sorted_timestamps: Sequence[datetime]) -> str | None:
    """The interval of ONE series from its timestamps in ascending order, or None.

    The rule the CSV source uses for "row spacing" (and the data migration for old rows): the
    most common gap between consecutive distinct timestamps is the interval when it is at
    least half of the gaps, at least 90% of the gaps are whole multiples of it (missing candles
    are fine, trades at random instants are not) and there are at least :data:`MIN_GAPS` gaps;
    a gap that is not whole seconds is no interval.
    """
    return interval_from_gaps(gaps_of(sorted_timestamps))[0]


def gaps_of(sorted_timestamps: Iterable[datetime]) -> list[int]:
    """Milliseconds between consecutive distinct timestamps (ascending input)."""
    gaps: list[int] = []
    previous: datetime | None = None
    for when in sorted_timestamps:
        if previous is not None and when != previous:
            gaps.append(round((when - previous).total_seconds() * 1000))
        previous = when
    return gaps


def candle_interval(durations_ms: Sequence[int]) -> str | None:
    """The interval of candles from ``close - open`` (a close stamped at ``.999`` rounds up)."""
    lengths = [math.ceil(d / 1000) * 1000 for d in durations_ms if d > 0]
    usual = _dominant(lengths, multiples=False) if lengths else None
    return interval_name(usual // 1000) if usual else None


# --------------------------------------------------------------------------------------------
# The series of a file
# --------------------------------------------------------------------------------------------


class SeriesFacts(msgspec.Struct, kw_only=True):
    """A file's series facts, kept in its checkpoint. ``quote`` is the file-level quote (a
    row's own pair may still name one); ``info`` says how each fact was found."""

    venue: str
    quote: str | None = None
    interval: str | None = None
    info: dict[str, str] = msgspec.field(default_factory=dict)


class Declared(msgspec.Struct, frozen=True, kw_only=True):
    venue: str | None = None
    quote: str | None = None
    interval: str | None = None


def derived_venue(file_name: str) -> str:
    """The venue of a file that names none: ``file:`` and its lower-case stem."""
    stem = file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"file:{'_'.join(stem.lower().split())}"


def _first(candidates: Iterable[tuple[str | None, str]]) -> tuple[str | None, str]:
    return next(((value, how) for value, how in candidates if value), (None, "unknown"))


def decide_series(
    *,
    file_name: str,
    declared: Declared,
    banner_venue: str | None,
    layout_venue: str | None,
    header_quote: str | None,
    candle: str | None,
    spacing: tuple[str | None, str],
) -> tuple[SeriesFacts, list[str]]:
    """The file-level series facts (module doc for the order) and warnings for conflicts."""
    named = facts_from_file_name(file_name)
    venue, venue_how = _first(
        [(named.venue, "file name"), (banner_venue, "banner"), (layout_venue, "layout")]
    )
    quote, quote_how = _first([(named.quote, "file name"), (header_quote, "header")])
    interval, interval_how = _first([(candle, "candle length"), spacing])
    if interval is None:
        interval_how = spacing[1]
    warnings: list[str] = []
    detected = {"venue": venue, "quote": quote, "interval": interval}
    for fact, value in msgspec.structs.asdict(declared).items():
        if value is not None and detected[fact] not in (None, value):
            warnings.append(
                f"CSV_COLUMN_MAP {fact}={value} overrides the {fact} {detected[fact]} found in "
                f"the {'rows' if fact == 'interval' else 'file'}"
            )
    if declared.venue:
        venue, venue_how = declared.venue, "CSV_COLUMN_MAP"
    if declared.quote:
        quote, quote_how = declared.quote, "CSV_COLUMN_MAP"
    if declared.interval:
        interval, interval_how = declared.interval, "CSV_COLUMN_MAP"
    if venue is None:
        venue, venue_how = derived_venue(file_name), "derived from the file name"
    info = {"venue": venue_how, "quote": quote_how, "interval": interval_how}
    return SeriesFacts(venue=venue, quote=quote, interval=interval, info=info), warnings


# --------------------------------------------------------------------------------------------
# Rows ingested by the old code (before market series), for the data migration
# --------------------------------------------------------------------------------------------

# The old code's column preferences (its header normalisation did not split camelCase).
_OLD_VOLUME = (
    "volume usd",
    "volume",
    "vol",
    "volume 24h",
    "24h volume",
    "volume 24h usd",
    "total volume",
    "volume24h",
)
_OLD_UNIX = ("unix", "unix timestamp", "unix time", "epoch", "unix ms", "timestamp ms")
_OLD_DATE = (
    "date",
    "datetime",
    "date utc",
    "timestamp",
    "time",
    "time utc",
    "day",
    "snapped at",
    "time open",
    "open time",
    "trade date",
)


class SeriesGuess(msgspec.Struct, frozen=True, kw_only=True):
    """Where :func:`legacy_series` puts an old row: the series the new source derives.

    ``symbol`` is the base ticker (old ``ETH/BTC`` rows become ``ETH``, old CoinMarketCap rows
    ``2781`` become the coin the file name names, or stay ``2781`` when it names none).
    ``interval`` is None: the migration computes it per series with
    :func:`interval_from_timestamps`. ``volume_unit`` is the unit of the column the old code
    stored as its USD volume (None: unknown, drop it). ``reread`` is True when the new source
    takes the timestamp from another column (CoinMarketCap: ``timeOpen``, the old code used
    the close ``timestamp``): such rows cannot be moved, only re-ingested from the file.
    """

    venue: str
    quote: str | None
    interval: str | None
    info: dict[str, str]
    volume_unit: VolumeUnit | None
    symbol: str
    reread: bool = False


def _old_column(header: Sequence[str], aliases: Sequence[str]) -> int:
    names = [" ".join(norm_header(cell, split_camel=False).split()) for cell in header]
    return next((names.index(a) for a in aliases if a in names), -1)


def legacy_series(
    file_name: str,
    header: Sequence[str] | None,
    symbol: str,
    old_metadata: Mapping[str, Any],
    declared: Declared | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    volume_unit: VolumeUnit | None = None,
) -> SeriesGuess:
    """The series the new source derives for a row the old code ingested from ``file_name``.

    ``header`` is the file's header (from the raw payload), ``symbol`` the old row's symbol and
    ``old_metadata`` its metadata (``symbol_raw``/``quote`` when the old code split a pair).
    ``declared``, ``columns`` and ``volume_unit`` are the file's venue/quote/interval, column
    mapping and volume unit from today's CSV_COLUMN_MAP, if any (``FileOptions.declared``,
    ``.columns``, ``.volume_unit``). A banner venue cannot be seen here (the old code did not
    keep banners): such files get the venue from their name or layout, as without a banner.
    """
    declared = declared or Declared()
    layout = _layout_or_none(header, file_name, columns, volume_unit)
    base, pair_quote = split_pair(symbol.upper())
    if old_metadata.get("quote"):
        pair_quote = str(old_metadata["quote"])
    how_quote = "symbol pair"
    if layout is not None and layout.symbol < 0 and layout.name < 0:
        base = layout.default_symbol or base  # the coin of the file (its name, or declared)
    if layout is not None and layout.quote_codes:  # CoinMarketCap: "2781" was the convert id
        pair_quote, how_quote = layout.quote_codes.get(symbol), "quote column"
    facts, _ = decide_series(
        file_name=file_name,
        declared=declared,
        banner_venue=None,
        layout_venue=layout.venue if layout else None,
        header_quote=layout.header_quote if layout else None,
        candle=None,
        spacing=(None, "unknown"),
    )
    info = {"venue": facts.info["venue"], "quote": facts.info["quote"]}
    quote = facts.quote
    if pair_quote and not declared.quote:
        quote, info["quote"] = pair_quote, how_quote
    unit: VolumeUnit | None = None
    reread = False
    if header and layout is not None:
        old_volume = _old_column(header, _OLD_VOLUME)
        unit = layout.unit_of_volume(old_volume, base, quote) if old_volume >= 0 else None
        old_unix = _old_column(header, _OLD_UNIX)
        reread = (old_unix if old_unix >= 0 else _old_column(header, _OLD_DATE)) != layout.date
    return SeriesGuess(
        venue=facts.venue,
        quote=quote,
        interval=None,
        info=info,
        volume_unit=unit,
        symbol=base,
        reread=reread,
    )


def _layout_or_none(
    header: Sequence[str] | None,
    file_name: str,
    columns: Mapping[str, str] | None,
    volume_unit: VolumeUnit | None,
) -> CsvLayout | None:
    if not header:
        return None
    try:
        return detect_layout(
            header, file_name, columns=columns, volume_unit=volume_unit, tolerate_no_symbol=True
        )
    except SourceError:  # the old code could not read it either (or the mapping changed)
        return None
