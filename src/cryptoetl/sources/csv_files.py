"""CSV files source: historical market data exported by exchanges, aggregators and spreadsheets.

``CSV_PATHS`` lists files, directories (every ``*.csv`` inside, sorted) and globs. Each file is
read as a stream (binary lines, decoded one at a time, fed to :mod:`csv`), so memory does not
grow with file size, and each batch carries the complete checkpoint cursor: a crash resumes at
the byte offset after the last committed row, an append reads only the new rows, an unchanged
file costs one ``stat``.

Layout
    Columns are found from the header, case-insensitively, with common aliases (see
    ``_ALIASES``): date/time/timestamp/unix, symbol/ticker/pair, coin names in
    name/currency/coin, price/close/value, market cap, volume, open/high/low and change %.
    A ``unix`` column wins over a ``date`` column (the text date is only a fallback for rows
    whose unix cell is unusable); ``Volume USD`` wins over ``Volume BTC``; ``Close`` wins over
    ``Adj Close``. Up to 10 lines before the header (e.g. a URL banner) are skipped.

``CSV_COLUMN_MAP`` (optional) -- per-file options, parsed by :func:`parse_column_map`::

    CSV_COLUMN_MAP = entry *(";" entry)
    entry          = file-pattern ":" option *("," option)
    option         = field "=" header-name      ; field: date symbol name price market_cap
                                                ;        volume open high low change
                   / "default_symbol=" SYMBOL   ; the coin of a file without a symbol column
                   / "date_order=" ("dmy"|"mdy"); when the data cannot decide day/month order

    e.g.  btc_prices.csv:default_symbol=BTC,price=Value;other*.csv:date=Day,date_order=dmy

    A pattern without "/" is matched (fnmatch, case-insensitive) against the file name, with
    "/" against the absolute path; the first matching entry wins. Header names are matched like
    the aliases (case, spaces, ``_-.()`` ignored); they cannot contain ``,`` or ``;``.

Symbols
    ``BTC/USD``, ``BTC-USD``, ``BTCUSD``, ``btc`` -> ``BTC``: a quote currency suffix
    (USD, USDT, USDC, EUR) is stripped when paired (the raw value and quote go to metadata);
    other pairs (``ETH/BTC``) are kept whole. Coin names (``bitcoin``, ``Bitcoin Cash``) map to
    tickers through a small table of well-known coins; the name is kept in ``name``.
    A file without a symbol/name column takes ``default_symbol`` from CSV_COLUMN_MAP, else the
    coin its file name clearly names: the name is split into alphanumeric tokens and exactly
    one well-known coin must appear, as a name (``coin_Bitcoin``, ``bitcoin-cash``) or as a
    ticker optionally paired with a quote (``BTC-USD``, ``Bitfinex_BTCUSD_d``, ``btc_daily``);
    a stablecoin next to another coin is its quote (``solana-usdt-1h`` is SOL).
    Otherwise the file is rejected (file-level Reject + warning); other files go on.

Values
    Thousands separators (``8,746.6``, ``1.234,5``; ``1,5`` is a decimal comma, and so is
    every lone comma in ``;``-delimited files, where ``0,312`` means 0.312; a lone dot is
    always a decimal point, even there), K/M/B/T suffixes,
    ``%``, a leading ``$``, and placeholders (blank, ``-``, ``null``, ``NaN``, ...) -> None.
    A price of 0 or below is rejected ("non-positive price"): exports such as blockchain.info
    write 0 for days before any market existed, and a 0 in a price series would corrupt every
    min/average/return computed from it; the row stays auditable as a Reject.
    A row is rejected when its date or a number does not parse, or it has no price and no
    other value (market cap, volume, open, high, low).

Timestamps (all become timezone-aware UTC; naive values are taken as UTC)
    ISO dates/datetimes (offsets converted), ``Jan 14, 2020``/``14 Jan 2020``/``14-Jan-20``,
    ``M/D/YY``, ``DD-MM-YY``, ``DD.MM.YYYY``, ``YYYY/M/D``, ``YYYYMMDD``, optional
    ``HH:MM[:SS] [AM|PM] [UTC]``. All-digit values are unix epochs whose unit is decided per
    value by magnitude: < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, else
    nanoseconds (so seconds and milliseconds may mix in one column).
    Two-digit years: 00-68 -> 2000-2068, 69-99 -> 1969-1999 (the POSIX ``%y`` pivot).
    Day/month order of ``a/b/y``-style dates is decided per file from ALL its rows by a
    streaming pre-pass over the date column (two booleans): a first part > 12 anywhere ->
    day-first; a second part > 12 anywhere -> month-first; both -> the file is inconsistent:
    unambiguous rows are read as they evidently are and ambiguous rows (both parts <= 12 and
    different) are rejected; never decidable -> month-first for ``/`` and day-first for ``-``
    and ``.`` (US vs European conventions). ``date_order`` in CSV_COLUMN_MAP overrides it.

Records
    ``source_id`` = ``SYMBOL:YYYY-MM-DDTHH:MM:SSZ`` (the file is not part of the identity, so
    the same observation in two files, or a re-read file, upserts onto one row). Volume and
    market cap are taken as given (no unit conversion); ``Volume BTC``-only files have none.
    ``metadata``: open, high, low, file, line, plus symbol_raw/quote or symbol_from when the
    symbol was derived. Two rows of one batch with the same source_id: the later line wins
    (warning). Each batch holds up to ``batch_size`` rows of one file, with ONE RawPayload
    (header, first_line, the cells as received) and ``processed`` = rows looked at.

Checkpoint (``cursor = {"files": {abs_path: state}}``, see :class:`FileState`)
    Unchanged file (same device/inode, size and mtime, fully read) -> no batches at all.
    Grown file with the same head hash (sha256 of the first 4096 bytes) whose byte before
    ``offset`` is a newline -> only the new rows. Anything else (replaced, shrunk, head changed,
    modified in place, CSV_COLUMN_MAP options changed) -> re-read from the start, which is
    idempotent because ``source_id`` = ``SYMBOL:timestamp`` upserts onto the same rows.
    Trailing line rule: a last line without a newline IS processed at end of file (many exports
    end that way), but ``offset`` only ever moves past newline-terminated lines. If the file
    grows later, that line is read again, now complete; the same source_id makes this
    idempotent and a row that was still being written is never lost. Lines that extend past the
    size seen when the file was opened (a writer is appending right now) wait for the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fnmatch
import glob
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, ClassVar, Final, Literal, NamedTuple

import msgspec

from cryptoetl.config import ConfigError, Settings
from cryptoetl.sources.base import (
    Batch,
    JsonDict,
    MarketRecord,
    RawPayload,
    Reject,
    SourceError,
    SourceType,
    content_hash,
)

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

DateOrder = Literal["dmy", "mdy"]
# "mixed": the file has both day-first and month-first evidence (see module doc).
FileDateOrder = Literal["dmy", "mdy", "mixed"]

HEAD_BYTES: Final = 4096  # bytes hashed to recognise "the same file" when it grows
_SNIFF_BYTES: Final = 65536  # bytes read to find the delimiter
_MAX_PREAMBLE_ROWS: Final = 10  # lines tolerated before the header (banners, URLs)
_DATE_CACHE_SIZE: Final = 8192  # bounded: multi-coin files repeat each date once per coin
_COIN_CACHE_SIZE: Final = 4096

# --------------------------------------------------------------------------------------------
# Well-known coins (for names in currency columns and file names)
# --------------------------------------------------------------------------------------------

# Lower-case names and slugs (coinmarketcap/kaggle style) -> ticker.
# fmt: off
_COIN_NAMES: Final[dict[str, str]] = {
    "bitcoin": "BTC", "ethereum": "ETH", "tether": "USDT", "ripple": "XRP",
    "binance-coin": "BNB", "binancecoin": "BNB", "bnb": "BNB", "usd-coin": "USDC",
    "solana": "SOL", "cardano": "ADA", "dogecoin": "DOGE", "tron": "TRX", "polkadot": "DOT",
    "litecoin": "LTC", "bitcoin-cash": "BCH", "stellar": "XLM", "eos": "EOS", "monero": "XMR",
    "ethereum-classic": "ETC", "chainlink": "LINK", "avalanche": "AVAX", "polygon": "MATIC",
    "matic-network": "MATIC", "shiba-inu": "SHIB", "cosmos": "ATOM", "uniswap": "UNI",
    "dai": "DAI", "tezos": "XTZ", "dash": "DASH", "zcash": "ZEC", "nem": "XEM", "iota": "MIOTA",
    "neo": "NEO", "wrapped-bitcoin": "WBTC", "toncoin": "TON", "filecoin": "FIL",
}
# fmt: on
# Names too common as words to be trusted in a file name ("dash_export.csv").
_WORDLIKE_NAMES: Final = frozenset({"dash", "neo", "nem", "iota", "dai"})
# Tickers accepted in file names: only those that are not also English words or common
# abbreviations ("link", "dot", "uni", "etc", "atom", "neo", "dash" would all misfire).
# fmt: off
_FILENAME_TICKERS: Final = frozenset({
    "BTC", "ETH", "USDT", "XRP", "BNB", "USDC", "SOL", "ADA", "DOGE", "TRX", "LTC", "BCH",
    "XLM", "EOS", "XMR", "AVAX", "MATIC", "SHIB", "XTZ", "ZEC", "WBTC",
})
# fmt: on
# Quote currencies stripped from pairs (longest first so BTCUSDT is not read as BTCUSD+T).
_QUOTES: Final = ("USDT", "USDC", "USD", "EUR")
_PAIR_SEPARATORS: Final = "/-_: "


class _Coin(NamedTuple):
    symbol: str
    name: str | None
    extra: dict[str, str] | None  # metadata added to each record (raw symbol, quote, origin)


def _split_quote(ticker: str) -> tuple[str, str | None]:
    """``BTC/USD`` -> (``BTC``, ``USD``); ``ETH/BTC`` -> unchanged; ``ticker`` is upper case."""
    for sep in _PAIR_SEPARATORS:
        if sep in ticker:
            base, _, quote = ticker.partition(sep)
            base, quote = base.strip(), quote.strip()
            if base and quote in _QUOTES:
                return base, quote
            return ticker, None
    for quote in _QUOTES:
        if ticker.endswith(quote) and len(ticker) > len(quote):
            base = ticker[: -len(quote)]
            # "BUSD", "TUSD", "FDUSD" are coins of their own: only strip when what is left is a
            # known ticker or long enough to be one (3+ characters).
            if base in _FILENAME_TICKERS or len(base) >= 3:
                return base, quote
    return ticker, None


def normalize_symbol(raw: str) -> str:
    """The base symbol of a ticker or pair: ``BTC/USD``, ``BTCUSD``, ``btc`` -> ``BTC``."""
    return _split_quote(raw.strip().upper())[0]


def _coin_for_name(name: str) -> str | None:
    key = name.strip().lower()
    return _COIN_NAMES.get(key) or _COIN_NAMES.get("-".join(key.split()))


def symbol_from_filename(file_name: str) -> str | None:
    """The one well-known coin a file name clearly names, else None (see module doc)."""
    stem = os.path.splitext(os.path.basename(file_name))[0]
    tokens = [t for t in re.split(r"[^A-Za-z0-9]+", stem) if t]
    found: set[str] = set()
    i = 0
    while i < len(tokens):
        low = tokens[i].lower()
        # Two-word names first, so "bitcoin_cash" is BCH and not BTC.
        if i + 1 < len(tokens) and f"{low}-{tokens[i + 1].lower()}" in _COIN_NAMES:
            found.add(_COIN_NAMES[f"{low}-{tokens[i + 1].lower()}"])
            i += 2
            continue
        if low in _COIN_NAMES and low not in _WORDLIKE_NAMES:
            found.add(_COIN_NAMES[low])
        else:
            base, _ = _split_quote(low.upper())
            if base in _FILENAME_TICKERS:
                found.add(base)
        i += 1
    if len(found) > 1:
        found -= set(_QUOTES)  # "solana-usdt-1h": the stablecoin is the quote of the pair
    return found.pop() if len(found) == 1 else None


class _CoinResolver:
    """Symbol/name cells -> :class:`_Coin`, cached (a file repeats the same few values)."""

    def __init__(self, has_symbol_column: bool) -> None:
        self._has_symbol_column = has_symbol_column
        self._cache: dict[tuple[str, str], _Coin] = {}

    def resolve(self, symbol_cell: str, name_cell: str) -> _Coin:
        key = (symbol_cell, name_cell)
        coin = self._cache.get(key)
        if coin is None:
            coin = self._resolve(symbol_cell.strip(), name_cell.strip())
            if len(self._cache) >= _COIN_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = coin
        return coin

    def _resolve(self, symbol: str, name: str) -> _Coin:
        raw = symbol if self._has_symbol_column else name
        if not raw:
            raise ValueError("empty symbol" if self._has_symbol_column else "empty coin name")
        known = _coin_for_name(raw)
        if known is not None:
            return _Coin(known, name or raw, None)
        base, quote = _split_quote(raw.upper())
        if not self._has_symbol_column:
            base = "-".join(base.split())  # an unknown coin name: "Some Coin" -> "SOME-COIN"
            if base.lower() == raw.lower():
                name = ""  # a ticker in a currency column ("BTC") is no name
        extra: dict[str, str] | None = None
        if base != raw:
            extra = {"symbol_raw": raw}
            if quote is not None:
                extra["quote"] = quote
        return _Coin(base, name or None, extra)


# --------------------------------------------------------------------------------------------
# CSV_COLUMN_MAP
# --------------------------------------------------------------------------------------------

FIELDS: Final = (
    "date",
    "symbol",
    "name",
    "price",
    "market_cap",
    "volume",
    "open",
    "high",
    "low",
    "change",
)
_SYMBOL_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,19}")


class FileOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options of the files matching ``pattern`` (one CSV_COLUMN_MAP entry)."""

    pattern: str
    columns: dict[str, str] = msgspec.field(default_factory=dict)  # our field -> header name
    default_symbol: str | None = None
    date_order: DateOrder | None = None

    def matches(self, path: str) -> bool:
        target = path if "/" in self.pattern else os.path.basename(path)
        return fnmatch.fnmatchcase(target.lower(), self.pattern.lower())


class ColumnMap(msgspec.Struct, frozen=True):
    """The parsed CSV_COLUMN_MAP: entries in the order given, the first match wins."""

    entries: tuple[FileOptions, ...] = ()

    def options_for(self, path: str) -> FileOptions | None:
        return next((entry for entry in self.entries if entry.matches(path)), None)


def _map_error(message: str) -> ConfigError:
    return ConfigError(
        f"CSV_COLUMN_MAP {message} (format: <file>:<field>=<header>,default_symbol=<SYM>,"
        f"date_order=dmy|mdy;<file>:...; fields: {', '.join(FIELDS)})"
    )


def _parse_map_entry(entry: str) -> FileOptions:
    pattern, sep, body = entry.partition(":")
    pattern = pattern.strip()
    if not sep or not pattern:
        raise _map_error(f"entry {entry!r} must start with a file name or pattern and ':'")
    columns: dict[str, str] = {}
    default_symbol: str | None = None
    date_order: DateOrder | None = None
    for item in (part.strip() for part in body.split(",")):
        if not item:
            continue
        key, eq, value = (s.strip() for s in item.partition("="))
        key = key.lower()
        if not eq or not key or not value:
            raise _map_error(f"option {item!r} of {pattern!r} must look like key=value")
        if key == "default_symbol":
            if not _SYMBOL_RE.fullmatch(value):
                raise _map_error(f"default_symbol {value!r} of {pattern!r} is not a symbol")
            default_symbol = normalize_symbol(value)
        elif key == "date_order":
            if value.lower() not in ("dmy", "mdy"):
                raise _map_error(f"date_order of {pattern!r} must be dmy or mdy, got {value!r}")
            date_order = "dmy" if value.lower() == "dmy" else "mdy"
        elif key in FIELDS:
            if key in columns:
                raise _map_error(f"maps {key!r} twice for {pattern!r}")
            columns[key] = value
        else:
            raise _map_error(f"has unknown option {key!r} for {pattern!r}")
    if not columns and default_symbol is None and date_order is None:
        raise _map_error(f"entry {entry!r} has no options")
    return FileOptions(
        pattern=pattern, columns=columns, default_symbol=default_symbol, date_order=date_order
    )


def parse_column_map(text: str) -> ColumnMap:
    """Parse CSV_COLUMN_MAP (format in the module doc); raise ConfigError naming it."""
    entries: list[FileOptions] = []
    for raw in text.split(";"):
        if not raw.strip():
            continue
        entry = _parse_map_entry(raw.strip())
        if any(e.pattern.lower() == entry.pattern.lower() for e in entries):
            raise _map_error(f"names {entry.pattern!r} twice")
        entries.append(entry)
    return ColumnMap(entries=tuple(entries))


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------

_PLACEHOLDERS: Final = frozenset(
    {"", "-", "--", "\u2013", "\u2014", "n/a", "na", "null", "none", "nan", "#n/a", "?"}
)
# Appending an exponent keeps the decimal exact: float("1.38e6") == 1380000.0, 1.38 * 1e6 isn't.
_SUFFIX_EXPONENT: Final = {"K": "e3", "M": "e6", "B": "e9", "T": "e12"}


def parse_number(text: str, decimal_comma: bool = False) -> float | None:
    """A cell as a float; None for blanks and placeholders; ValueError when it is no number.

    ``decimal_comma``: the file is European (``;``-delimited), so a lone comma is always the
    decimal mark (``0,312``); otherwise ``1,234`` with 3-digit groups is a thousands separator.
    """
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return _parse_messy_number(text, decimal_comma)
    if value - value != 0.0:  # only NaN and +-inf: NaN is a placeholder, inf is garbage
        if value != value:
            return None
        raise ValueError("not a finite number")
    return value


def _parse_messy_number(text: str, decimal_comma: bool) -> float | None:
    t = text.strip().replace("\u00a0", "")
    if t.lower() in _PLACEHOLDERS:
        return None
    if t[:1] == "$":
        t = t[1:]
    if t.endswith("%"):
        t = t[:-1].rstrip()
    exponent = _SUFFIX_EXPONENT.get(t[-1:].upper(), "")
    if exponent:
        t = t[:-1].rstrip()
    if "," in t:
        t = _drop_separators(t, decimal_comma)
    try:
        value = float(t + exponent)
    except ValueError:
        raise ValueError("not a number") from None
    if value - value != 0.0:
        raise ValueError("not a finite number")
    return value


def _drop_separators(t: str, decimal_comma: bool) -> str:
    """``8,746.6`` -> ``8746.6``; ``1.234,5`` -> ``1234.5``; ``1,5`` -> ``1.5``."""
    if "." in t:
        if t.rfind(",") > t.rfind("."):
            return t.replace(".", "").replace(",", ".")
        return t.replace(",", "")
    head, *groups = t.split(",")
    if len(groups) == 1 and (decimal_comma or len(groups[0]) != 3):
        return f"{head}.{groups[0]}"
    if all(len(g) == 3 for g in groups) and 0 < len(head.lstrip("+-")) <= 3:
        return head + "".join(groups)
    raise ValueError("not a number")


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MONTHS: Final[dict[str, int]] = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
# fmt: off
_WEEKDAYS: Final = frozenset({
    "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
})
# fmt: on
_UTC_NAMES: Final = frozenset({"utc", "gmt", "z", "+00:00", "+0000"})
_MONTH_DATE_SEPARATORS: Final = str.maketrans({",": " ", "-": " ", "/": " "})


def _year(text: str) -> int:
    if len(text) == 4:
        return int(text)
    if len(text) == 2:
        yy = int(text)
        return 2000 + yy if yy <= 68 else 1900 + yy  # POSIX %y pivot
    raise ValueError("the year must have 2 or 4 digits")


def _from_epoch(value: float) -> datetime:
    """Unix time whose unit is decided by magnitude (s, ms, us, ns)."""
    size = abs(value)
    try:
        if size >= 1e17:
            return _EPOCH + timedelta(microseconds=value / 1000)
        if size >= 1e14:
            return _EPOCH + timedelta(microseconds=value)
        if size >= 1e11:
            return _EPOCH + timedelta(milliseconds=value)
        return _EPOCH + timedelta(seconds=value)
    except OverflowError:
        raise ValueError("unix time out of range") from None


def _parse_time(text: str) -> tuple[int, int, int, int]:
    """``HH:MM[:SS[.f]] [AM|PM] [UTC]`` -> (hour, minute, second, microsecond)."""
    clock, *rest = text.split()
    clock = clock.removesuffix("Z")
    parts = clock.split(":")
    if not 2 <= len(parts) <= 3:
        raise ValueError(f"unrecognised time {text!r}")
    hour, minute = int(parts[0]), int(parts[1])
    second_text, _, fraction = (parts[2] if len(parts) == 3 else "0").partition(".")
    second = int(second_text)
    micro = int((fraction + "000000")[:6]) if fraction else 0
    for token in rest:
        word = token.lower()
        if word == "pm" and hour < 12:
            hour += 12
        elif word == "am" and hour == 12:
            hour = 0
        elif word not in ("am", "pm") and word not in _UTC_NAMES:
            raise ValueError(f"unsupported time zone {token!r}")
    return hour, minute, second, micro


def _month_name_date(text: str) -> datetime:
    """``Jan 14, 2020``, ``14 Jan 2020``, ``14-Jan-20``, ``Tue, 14 January 2020 10:00``."""
    month = 0
    numbers: list[str] = []
    clock: list[str] = []
    for token in text.translate(_MONTH_DATE_SEPARATORS).split():
        if ":" in token or clock:
            clock.append(token)
        elif token.isdigit():
            numbers.append(token)
        else:
            word = token.lower().rstrip(".")
            if word in _MONTHS and not month:
                month = _MONTHS[word]
            elif word not in _WEEKDAYS and word not in _UTC_NAMES:
                raise ValueError(f"unrecognised word {token!r}")
    if not month or len(numbers) != 2:
        raise ValueError("unrecognised date")
    first, second = numbers
    # Year first only when written with 4 digits ("2020 Jan 14"); otherwise the day comes
    # before the year in every common form ("Jan 14, 2020", "14 Jan 2020", "14-Jan-20").
    year, day = (int(first), int(second)) if len(first) == 4 else (_year(second), int(first))
    hour, minute, sec, micro = _parse_time(" ".join(clock)) if clock else (0, 0, 0, 0)
    return datetime(year, month, day, hour, minute, sec, micro, tzinfo=UTC)


def _day_month_parts(text: str) -> tuple[int, int, str] | None:
    """(a, b, separator) of an ``a?b?y`` date whose day/month order is unknown, else None."""
    s = text.strip()
    if len(s) < 5 or not s[0].isdigit():
        return None
    sep = s[1] if s[1] in "/-." else s[2] if s[2] in "/-." else ""
    if not sep:
        return None
    parts = s.split(" ", 1)[0].split("T", 1)[0].split(sep)
    if len(parts) != 3 or len(parts[0]) > 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1]), sep


class _DateParser:
    """Date cells -> (UTC datetime, ISO text), with the day/month order of one file.

    ``order`` is None until the first ``a/b/y`` value; then ``decide`` (the file's streaming
    pre-pass) fixes it for the whole file. Without ``decide`` (single values) each value
    decides for itself, falling back to the separator convention.
    """

    __slots__ = ("_cache", "_decide", "_unix_column", "order")

    def __init__(
        self,
        order: FileDateOrder | None = None,
        decide: Callable[[], FileDateOrder] | None = None,
        unix_column: bool = False,
    ) -> None:
        self.order = order
        self._decide = decide
        self._unix_column = unix_column
        self._cache: dict[str, tuple[datetime, str]] = {}

    def parse(self, text: str) -> tuple[datetime, str]:
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        value = self._parse(text.strip())
        iso = value.isoformat()
        result = (value, iso[:-6] + "Z" if iso.endswith("+00:00") else iso)
        if len(self._cache) >= _DATE_CACHE_SIZE:
            self._cache.clear()
        self._cache[text] = result
        return result

    def _parse(self, s: str) -> datetime:
        if not s:
            raise ValueError("empty")
        first = s[0]
        if first.isdigit():
            if s.isdigit():
                return self._digits(s)
            if len(s) >= 10 and s[4] == "-" and s[:4].isdigit():
                try:
                    value = datetime.fromisoformat(s)
                except ValueError:
                    return self._separated(s)  # not strict ISO ("2020-1-5"): the general forms
                if value.tzinfo is None:
                    return value.replace(tzinfo=UTC)
                return value.astimezone(UTC)
            return self._separated(s)
        if first in "+-":
            return _from_epoch(float(s))
        if first.isalpha():
            return _month_name_date(s)
        raise ValueError("unrecognised date")

    def _digits(self, s: str) -> datetime:
        # 8 digits starting 19/20 in a date column are YYYYMMDD (as unix seconds they would
        # be 1970-1973, before any crypto market); in a unix column they stay epochs.
        if len(s) == 8 and not self._unix_column and s[:2] in ("19", "20"):
            try:
                return datetime(int(s[:4]), int(s[4:6]), int(s[6:]), tzinfo=UTC)
            except ValueError:
                pass  # not a valid YYYYMMDD: an epoch after all
        return _from_epoch(int(s))

    def _separated(self, s: str) -> datetime:
        i = 1
        while i < len(s) and s[i].isdigit():
            i += 1
        sep = s[i]
        if sep in "/-." and i in (1, 2, 4):
            if s[i + 1 : i + 2].isalpha():
                return _month_name_date(s)
            try:
                return self._numeric_date(s, sep, year_first=i == 4)
            except ValueError:
                if sep != "." or i == 4:
                    raise
        elif sep == " " and any(c.isalpha() for c in s):
            return _month_name_date(s)
        return _from_epoch(float(s))  # "1634428800.0", "1.6e9"

    def _numeric_date(self, s: str, sep: str, *, year_first: bool) -> datetime:
        date_part, space, time_part = s.partition(" ")
        if not space and "T" in date_part:
            date_part, _, time_part = date_part.partition("T")
        parts = date_part.split(sep)
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError("unrecognised date")
        if year_first:
            year, month, day = int(parts[0]), int(parts[1]), int(parts[2])
        else:
            a, b, year = int(parts[0]), int(parts[1]), _year(parts[2])
            day, month = (a, b) if self._order_for(a, b, sep) == "dmy" else (b, a)
        hour, minute, sec, micro = _parse_time(time_part) if time_part.strip() else (0, 0, 0, 0)
        return datetime(year, month, day, hour, minute, sec, micro, tzinfo=UTC)

    def _order_for(self, a: int, b: int, sep: str) -> DateOrder:
        order = self.order
        if order is None:
            if self._decide is None:  # a lone value: it can only speak for itself
                return "dmy" if a > 12 else "mdy" if b > 12 or sep == "/" else "dmy"
            order = self.order = self._decide()
        if order != "mixed":
            return order
        if a > 12:
            return "dmy"
        if b > 12 or a == b:
            return "mdy"
        raise ValueError(
            "ambiguous day/month order: the file has both day-first and month-first dates"
        )


def parse_date(
    text: str, date_order: DateOrder | None = None, *, unix_column: bool = False
) -> datetime:
    """One date cell as a UTC datetime (for a whole file the order comes from all its rows)."""
    return _DateParser(date_order, unix_column=unix_column).parse(text)[0]


def decide_date_order(first_gt12: bool, second_gt12: bool, sep: str | None) -> FileDateOrder:
    """The day/month rule of the module doc, from a file's evidence."""
    if first_gt12 and second_gt12:
        return "mixed"
    if first_gt12:
        return "dmy"
    if second_gt12:
        return "mdy"
    return "mdy" if sep == "/" else "dmy"


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------

# Normalised header names (lower case; "_-.()[]/:" become spaces), in order of preference.
# fmt: off
_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "unix": ("unix", "unix timestamp", "unix time", "epoch", "unix ms", "timestamp ms"),
    "date": ("date", "datetime", "date utc", "timestamp", "time", "time utc", "day",
             "snapped at", "time open", "open time", "trade date"),
    "symbol": ("symbol", "ticker", "pair", "asset", "instrument"),
    "name": ("name", "coin", "currency", "coin name", "crypto", "cryptocurrency", "slug"),
    "price": ("close", "close usd", "closing price usd", "closing price", "close price",
              "price", "price usd", "last", "last price", "value", "rate", "adj close"),
    "market_cap": ("market cap", "marketcap", "market cap usd", "market capitalization",
                   "mcap", "cap"),
    "volume": ("volume usd", "volume", "vol", "volume 24h", "24h volume", "volume 24h usd",
               "total volume", "volume24h"),
    "open": ("open", "open usd", "24h open usd", "open price"),
    "high": ("high", "high usd", "24h high usd", "high price"),
    "low": ("low", "low usd", "24h low usd", "low price"),
    "change": ("change %", "change", "% change", "%change", "change pct", "pct change",
               "percent change", "change 24h", "24h change", "change 24h %",
               "percent change 24h"),
}
# fmt: on
_VALUE_FIELDS: Final = ("price", "market_cap", "volume", "open", "high", "low")
_HEADER_TABLE: Final = str.maketrans(dict.fromkeys("_-.()[]/:", " "))


def _norm_header(cell: str) -> str:
    return " ".join(cell.replace("\ufeff", "").strip().lower().translate(_HEADER_TABLE).split())


class CsvLayout(msgspec.Struct, frozen=True, kw_only=True):
    """Where each field of a file lives: column indexes, -1 when absent."""

    header: tuple[str, ...]
    date: int
    date_fallback: int = -1  # the text date when ``date`` is a unix column
    date_is_unix: bool = False
    symbol: int = -1
    name: int = -1
    price: int = -1
    market_cap: int = -1
    volume: int = -1
    open: int = -1
    high: int = -1
    low: int = -1
    change: int = -1
    default_symbol: str | None = None
    symbol_origin: str = "column"  # column | name column | CSV_COLUMN_MAP | file name

    @property
    def needed(self) -> int:
        """Cells a row must have to reach every column we read."""
        return 1 + max(
            self.date,
            self.date_fallback,
            self.symbol,
            self.name,
            self.price,
            self.market_cap,
            self.volume,
            self.open,
            self.high,
            self.low,
            self.change,
        )


def _find_column(index: dict[str, int], field: str) -> int:
    return next((index[a] for a in _ALIASES[field] if a in index), -1)


def _header_index(header: list[str] | tuple[str, ...]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, cell in enumerate(header):
        index.setdefault(_norm_header(cell), i)  # the first of duplicated names wins
    return index


def looks_like_header(row: list[str], options: FileOptions | None = None) -> bool:
    """A row with a recognisable date column and at least one value column."""
    index = _header_index(row)
    mapped = {f: _norm_header(h) for f, h in (options.columns if options else {}).items()}

    def present(field: str) -> bool:
        return mapped[field] in index if field in mapped else _find_column(index, field) >= 0

    return (present("unix") or present("date")) and any(map(present, _VALUE_FIELDS))


def detect_layout(
    header: list[str] | tuple[str, ...], path: str, options: FileOptions | None = None
) -> CsvLayout:
    """Column indexes of a file from its header; SourceError when they cannot be found."""
    index = _header_index(header)
    file_name = os.path.basename(path)
    columns: dict[str, int] = {}
    for field, name in (options.columns if options else {}).items():
        found = index.get(_norm_header(name), -1)
        if found < 0:
            hint = f" (for a fixed symbol use default_symbol={name})" if field == "symbol" else ""
            raise SourceError(
                f"{path}: CSV_COLUMN_MAP maps {field} to column {name!r}, but the header "
                f"{list(header)} has no such column{hint}"
            )
        columns[field] = found
    for field in _ALIASES:
        if field not in columns and field != "unix":
            columns[field] = _find_column(index, field)
    unix = -1 if "date" in (options.columns if options else {}) else _find_column(index, "unix")
    date, fallback = (unix, columns["date"]) if unix >= 0 else (columns["date"], -1)
    if date < 0 or all(columns[f] < 0 for f in _VALUE_FIELDS):
        raise SourceError(
            f"{path}: no recognisable date and price/value columns in the header {list(header)}"
        )
    default_symbol, origin = None, "column"
    if columns["symbol"] < 0:
        origin = "name column"
        if columns["name"] < 0:
            default_symbol, origin = _default_symbol(path, file_name, options)
    return CsvLayout(
        header=tuple(header),
        date=date,
        date_fallback=fallback,
        date_is_unix=unix >= 0,
        symbol=columns["symbol"],
        name=columns["name"],
        price=columns["price"],
        market_cap=columns["market_cap"],
        volume=columns["volume"],
        open=columns["open"],
        high=columns["high"],
        low=columns["low"],
        change=columns["change"],
        default_symbol=default_symbol,
        symbol_origin=origin,
    )


def _default_symbol(path: str, file_name: str, options: FileOptions | None) -> tuple[str, str]:
    if options is not None and options.default_symbol:
        return options.default_symbol, "CSV_COLUMN_MAP"
    inferred = symbol_from_filename(file_name)
    if inferred is not None:
        return inferred, "file name"
    raise SourceError(
        f"{path}: no symbol column, no default symbol, and the file name does not clearly name "
        f"one well-known coin; set CSV_COLUMN_MAP={file_name}:default_symbol=<SYMBOL>"
    )


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------

RowParser = Callable[[list[str], int], MarketRecord | str]


def make_row_parser(
    layout: CsvLayout, dates: _DateParser, file_name: str, decimal_comma: bool = False
) -> RowParser:
    """A function turning one data row into a MarketRecord, or the reason to reject it.

    Everything that depends only on the file (indexes, names, converters) is bound here once,
    so the per-row work is indexing, float() and one struct.
    """
    header = layout.header
    needed, width = layout.needed, len(header)
    di, dfi = layout.date, layout.date_fallback
    si, ni = layout.symbol, layout.name
    pi, mi, vi = layout.price, layout.market_cap, layout.volume
    oi, hi, li, ci = layout.open, layout.high, layout.low, layout.change
    parse_day = dates.parse
    num = parse_number
    resolver = _CoinResolver(has_symbol_column=si >= 0)
    resolve = resolver.resolve
    fixed: _Coin | None = None
    if layout.default_symbol is not None:
        fixed = _Coin(layout.default_symbol, None, {"symbol_from": layout.symbol_origin})
    coin_column = header[si] if si >= 0 else header[ni] if ni >= 0 else ""
    price_name = header[pi] if pi >= 0 else "price"
    flt = float
    numeric = (pi, mi, vi, oi, hi, li, ci)
    venue = "file:" + os.path.splitext(file_name)[0].lower()  # interim: until series detection

    def messy_numbers(row: list[str]) -> list[float | None] | str:
        """The careful path, cell by cell, naming the column that does not parse."""
        values: list[float | None] = []
        for col in numeric:
            try:
                values.append(num(row[col], decimal_comma) if col >= 0 else None)
            except ValueError as exc:
                return f"bad number in column {header[col]!r}: {row[col]!r} ({exc})"
        return values

    def parse(row: list[str], line: int) -> MarketRecord | str:
        if len(row) < needed:
            return f"row has {len(row)} cells, the header has {width}"
        try:
            when, iso = parse_day(row[di])
        except ValueError as exc:
            if dfi < 0 or not row[dfi].strip():
                return f"bad date in column {header[di]!r}: {row[di]!r} ({exc})"
            try:  # an unusable unix cell: the row's text date still identifies it
                when, iso = parse_day(row[dfi])
            except ValueError:
                return f"bad date in column {header[di]!r}: {row[di]!r} ({exc})"
        if fixed is not None:
            coin = fixed
        else:
            try:
                coin = resolve(row[si] if si >= 0 else "", row[ni] if ni >= 0 else "")
            except ValueError as exc:
                return f"{exc} in column {coin_column!r}"
        try:  # fast path: plain numbers (float() is C; blanks and "8,746.6" raise)
            price = flt(row[pi]) if pi >= 0 else None
            mcap = flt(row[mi]) if mi >= 0 else None
            volume = flt(row[vi]) if vi >= 0 else None
            open_ = flt(row[oi]) if oi >= 0 else None
            high = flt(row[hi]) if hi >= 0 else None
            low = flt(row[li]) if li >= 0 else None
            change = flt(row[ci]) if ci >= 0 else None
            # float() also takes "nan"/"inf": one sum reveals either (x - x is 0 for finite x)
            total = (
                (price or 0.0)
                + (mcap or 0.0)
                + (volume or 0.0)
                + (open_ or 0.0)
                + (high or 0.0)
                + (low or 0.0)
                + (change or 0.0)
            )
            if total - total != 0.0:
                raise ValueError
        except ValueError:
            numbers = messy_numbers(row)
            if isinstance(numbers, str):
                return numbers
            price, mcap, volume, open_, high, low, change = numbers
        if price is None:
            if mcap is None and volume is None and open_ is None and high is None and low is None:
                return f"no price in column {price_name!r} and no other value"
        elif price <= 0:
            return f"non-positive price in column {price_name!r}: {row[pi]!r}"
        if mcap is not None and mcap < 0:
            return f"negative market cap in column {header[mi]!r}: {row[mi]!r}"
        if volume is not None and volume < 0:
            return f"negative volume in column {header[vi]!r}: {row[vi]!r}"
        quote = coin.extra.get("quote") if coin.extra else None
        return MarketRecord(
            source_type="csv",
            venue=venue,
            symbol=coin.symbol,
            quote=quote,
            interval=None,
            name=coin.name,
            price=price,
            open=open_,
            high=high,
            low=low,
            market_cap=mcap,
            change_pct=change,
            source_timestamp=when,
        )

    return parse


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------


class _LineFeed:
    """Decoded lines of a binary file from ``start`` up to ``limit`` bytes, for csv.reader.

    ``pos`` is the byte offset after the last line handed out: csv.reader pulls one line at a
    time and never reads ahead, so after it returns a row, ``pos`` is the end of that row.
    Splitting bytes on b"\\n" is safe for UTF-8 (0x0A never occurs inside a multibyte char).
    """

    __slots__ = ("_limit", "file", "latin1_line", "pos")

    def __init__(self, f: IO[bytes], start: int, limit: int) -> None:
        self.file = f
        self._limit = limit
        self.pos = start
        self.latin1_line = 0  # the first line that was not UTF-8 (decoded as Latin-1), if any

    def __iter__(self) -> Iterator[str]:
        pos, limit = self.pos, self._limit
        for count, raw in enumerate(self.file, 1):
            end = pos + len(raw)
            if end > limit:
                # The file grew after we took its size: this line may still be being
                # written, so it belongs to the next run.
                break
            if pos == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # UTF-8 byte order mark
            pos = self.pos = end
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                # Spreadsheet exports are sometimes cp1252/Latin-1: keep the row readable
                # (numbers and dates are ASCII anyway) and say so once.
                text = raw.decode("latin-1")
                self.latin1_line = self.latin1_line or count
            yield text
            if end == limit:
                break


def _sniff_delimiter(head: bytes) -> str:
    """The delimiter of the first line that has one (outside quotes); ties go to ","."""
    for line in head.decode("utf-8", errors="replace").splitlines()[:_MAX_PREAMBLE_ROWS]:
        counts = dict.fromkeys(",;\t|", 0)
        quoted = False
        for char in line:
            if char == '"':
                quoted = not quoted
            elif not quoted and char in counts:
                counts[char] += 1
        best = max(counts, key=lambda c: (counts[c], c == ","))
        if counts[best]:
            return best
    return ","


def _scan_day_month(
    path: str, start: int, limit: int, delimiter: str, columns: tuple[int, ...]
) -> tuple[bool, bool, str | None]:
    """Streaming pre-pass: (some first part > 12, some second part > 12, first separator)."""
    first_gt = second_gt = False
    sep: str | None = None
    with open(path, "rb") as f:
        f.seek(start)
        reader = csv.reader(_LineFeed(f, start, limit), delimiter=delimiter)
        while not (first_gt and second_gt):
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                continue  # the main pass rejects this row
            for col in columns:
                parts = _day_month_parts(row[col]) if col < len(row) else None
                if parts is not None:
                    a, b, found = parts
                    sep = sep or found
                    first_gt = first_gt or a > 12
                    second_gt = second_gt or b > 12
    return first_gt, second_gt, sep


def _ends_with_newline(f: IO[bytes], offset: int) -> bool:
    f.seek(offset - 1)
    return f.read(1) == b"\n"


# --------------------------------------------------------------------------------------------
# Checkpoint
# --------------------------------------------------------------------------------------------


class FileState(msgspec.Struct, kw_only=True):
    """One file's entry in the cursor (``cursor["files"][abs_path]``), JSON-compatible."""

    dev: int
    inode: int
    size: int  # the size read up to (taken when the file was opened)
    mtime_ns: int
    head_hash: str = ""  # sha256 hex of the first head_len bytes
    head_len: int = 0
    offset: int = 0  # where the next run resumes: after the last newline-terminated row
    line: int = 0  # lines before offset
    header: list[str] | None = None
    delimiter: str = ","
    date_order: FileDateOrder | None = None
    date_order_from: Literal["data", "default", "config"] | None = None
    # [some first part > 12, some second part > 12] over the rows read so far
    dm_evidence: list[bool] = msgspec.field(default_factory=lambda: [False, False])
    date_sep: str | None = None
    last_timestamp: str | None = None  # the latest timestamp read from the file (ISO, UTC)
    options_hash: str = ""  # of the file's CSV_COLUMN_MAP entry: a change forces a re-read
    eof: bool = False  # everything up to ``size`` was processed
    error: str | None = None  # the file-level problem, if the file was rejected


Plan = Literal["skip", "resume", "full"]


def _plan(prev: FileState | None, st: os.stat_result, options_hash: str) -> tuple[Plan, str]:
    """What to do with a file given its checkpoint, and why (for a warning when re-reading)."""
    if prev is None:
        return "full", ""
    if prev.options_hash != options_hash:
        return "full", "its CSV_COLUMN_MAP options changed"
    if (prev.dev, prev.inode) != (st.st_dev, st.st_ino):
        return "full", "it was replaced (new inode)"
    if st.st_size < prev.size:
        return "full", "it shrank"
    if st.st_size == prev.size:
        if st.st_mtime_ns == prev.mtime_ns:
            return ("skip", "") if prev.eof else ("resume", "")
        return "full", "it was modified in place (same size, new mtime)"
    if prev.error is not None or prev.header is None:
        return "full", ""
    return "resume", ""


def _options_hash(options: FileOptions | None) -> str:
    return "" if options is None else content_hash(msgspec.to_builtins(options)).hex()[:16]


def _load_states(cursor: JsonDict) -> dict[str, FileState]:
    """The cursor's file entries; a malformed entry is dropped (that file is re-read)."""
    files = cursor.get("files") if isinstance(cursor, dict) else None
    states: dict[str, FileState] = {}
    if isinstance(files, dict):
        for path, entry in files.items():
            with contextlib.suppress(msgspec.ValidationError):
                states[str(path)] = msgspec.convert(entry, FileState)
    return states


def resolve_paths(entries: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """CSV_PATHS entries -> (absolute file paths in order, warnings for missing entries)."""
    found: dict[str, None] = {}
    warnings: list[str] = []
    for raw in entries:
        entry = os.path.expanduser(raw)
        if any(c in entry for c in "*?["):
            matches = sorted(p for p in glob.glob(entry, recursive=True) if os.path.isfile(p))
        elif os.path.isdir(entry):
            matches = sorted(
                os.path.join(entry, name)
                for name in os.listdir(entry)
                if name.lower().endswith(".csv") and os.path.isfile(os.path.join(entry, name))
            )
        elif os.path.isfile(entry):
            matches = [entry]
        else:
            warnings.append(f"csv: CSV_PATHS entry {raw!r} does not exist")
            continue
        for match in matches:
            found.setdefault(os.path.abspath(match), None)
    return list(found), warnings


# --------------------------------------------------------------------------------------------
# Reading one file
# --------------------------------------------------------------------------------------------


class _Restart(Exception):
    """New rows changed the file's day/month order: read it again from the start."""


class _Run:
    """One call of ``batches``: the states of all files, so each batch carries them all."""

    def __init__(self, states: dict[str, FileState]) -> None:
        self.states = states

    def cursor(self) -> JsonDict:
        return {"files": {path: msgspec.to_builtins(s) for path, s in self.states.items()}}


class _FileReader:
    """Reads one file from its checkpoint and yields its batches."""

    def __init__(
        self,
        run: _Run,
        path: str,
        prev: FileState | None,
        options: FileOptions | None,
        batch_size: int,
        note: str,
    ) -> None:
        self.run = run
        self.path = path
        self.file_name = os.path.basename(path)
        self.prev = prev
        self.options = options
        self.options_hash = _options_hash(options)
        self.batch_size = batch_size
        self.warnings: list[str] = (
            [f"csv: {path}: re-reading from the start: {note}"] if note else []
        )
        self.state = FileState(dev=0, inode=0, size=0, mtime_ns=0)
        self.limit = 0
        self.max_ts: datetime | None = None

    # -- entry point ----------------------------------------------------------------------

    def batches(self, st: os.stat_result) -> Iterator[Batch]:
        """``st``: the stat the plan was made from (recorded if the file cannot be opened)."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed by the with below, across yields
        except OSError as exc:
            self._start_state(st, b"")
            yield self._file_reject(f"{self.path}: cannot open: {exc.strerror or exc}")
            return
        with f:
            st = os.fstat(f.fileno())
            self.limit = st.st_size
            head = f.read(_SNIFF_BYTES)
            self._start_state(st, head)
            prev = self.prev
            if prev is not None and not self._can_resume(f, prev, head):
                self.warnings.append(
                    f"csv: {self.path}: re-reading from the start: its beginning changed"
                )
                prev = None
            try:
                try:
                    yield from self._read(f, head, prev)
                except _Restart as restart:
                    self.warnings.append(f"csv: {self.path}: {restart}")
                    self._start_state(st, head)
                    yield from self._read(f, head, None)
            except SourceError as exc:
                yield self._file_reject(str(exc))
            except OSError as exc:
                # The checkpoint keeps the last committed offset: the next run resumes there.
                self.warnings.append(f"csv: {self.path}: read error: {exc}")
                yield Batch(cursor=self.run.cursor(), warnings=self._take_warnings())

    # -- checkpoint helpers ---------------------------------------------------------------

    def _start_state(self, st: os.stat_result, head: bytes) -> None:
        head_len = min(HEAD_BYTES, len(head))
        self.state = FileState(
            dev=st.st_dev,
            inode=st.st_ino,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            head_hash=hashlib.sha256(head[:head_len]).hexdigest(),
            head_len=head_len,
            options_hash=self.options_hash,
        )
        self.max_ts = None

    def _can_resume(self, f: IO[bytes], prev: FileState, head: bytes) -> bool:
        if prev.header is None or prev.error is not None or prev.offset > self.limit:
            return False
        if hashlib.sha256(head[: prev.head_len]).hexdigest() != prev.head_hash:
            return False
        return prev.offset == 0 or _ends_with_newline(f, prev.offset)

    def _take_warnings(self) -> list[str]:
        warnings, self.warnings = self.warnings, []
        return warnings

    def _file_reject(self, reason: str) -> Batch:
        """The whole file is unusable: record it (and skip it until it changes)."""
        self.state.error, self.state.eof, self.state.offset = reason, True, 0
        self.run.states[self.path] = self.state
        self.warnings.append(f"csv: file rejected: {reason}")
        header = self.state.header
        return Batch(
            rejects=[
                Reject(
                    source_key=self.path,
                    payload={"file": self.path, "header": header},
                    reason=reason,
                )
            ],
            cursor=self.run.cursor(),
            processed=1,  # the file itself is the rejected item: processed = valid + rejected
            warnings=self._take_warnings(),
        )

    # -- reading --------------------------------------------------------------------------

    def _read(self, f: IO[bytes], head: bytes, prev: FileState | None) -> Iterator[Batch]:
        state = self.state
        if prev is None:
            if head.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise SourceError(f"{self.path}: UTF-16 encoded; save the file as UTF-8")
            if b"\r" in head and b"\n" not in head:
                raise SourceError(f"{self.path}: CR-only line ends are not supported; use LF/CRLF")
            if self.limit == 0 or (b"\n" not in head and self.limit <= len(head)):
                # Empty, or a header still being written: nothing to read yet.
                state.eof = True
                self.run.states[self.path] = state
                yield Batch(cursor=self.run.cursor(), warnings=self._take_warnings())
                return
            state.delimiter = _sniff_delimiter(head)
            f.seek(0)
            feed = _LineFeed(f, 0, self.limit)
            reader = csv.reader(feed, delimiter=state.delimiter)
            state.header = self._find_header(reader)
            base_line, start = 0, 0
        else:
            state.header, state.delimiter = prev.header, prev.delimiter
            state.date_order, state.date_order_from = prev.date_order, prev.date_order_from
            state.dm_evidence, state.date_sep = prev.dm_evidence, prev.date_sep
            state.last_timestamp = prev.last_timestamp
            f.seek(prev.offset)
            feed = _LineFeed(f, prev.offset, self.limit)
            reader = csv.reader(feed, delimiter=state.delimiter)
            base_line, start = prev.line, prev.offset
        assert state.header is not None
        layout = detect_layout(state.header, self.path, self.options)
        dates = self._date_parser(layout, start, prev)
        parse = make_row_parser(layout, dates, self.file_name, state.delimiter == ";")
        yield from self._rows(reader, feed, parse, base_line)

    def _find_header(self, reader: CsvReader) -> list[str]:
        first: list[str] | None = None
        for _ in range(_MAX_PREAMBLE_ROWS):
            try:
                row = next(reader, None)
            except csv.Error:
                continue  # a malformed banner line
            if row is None:
                break
            if not row or not any(cell.strip() for cell in row):
                continue
            if looks_like_header(row, self.options):
                return row
            first = first or row
        raise SourceError(
            f"{self.path}: no recognisable date and price/value columns in the header "
            f"{first if first is not None else []}"
        )

    def _date_parser(self, layout: CsvLayout, start: int, prev: FileState | None) -> _DateParser:
        state = self.state
        forced = self.options.date_order if self.options else None
        if forced is not None:
            state.date_order, state.date_order_from = forced, "config"
            return _DateParser(forced, unix_column=layout.date_is_unix)
        prior_order = prev.date_order if prev is not None else None
        prior = prev.dm_evidence if prev is not None and len(prev.dm_evidence) == 2 else [False] * 2
        prior_sep = prev.date_sep if prev is not None else None
        columns = tuple(c for c in (layout.date, layout.date_fallback) if c >= 0)

        def decide() -> FileDateOrder:
            # Runs once, at the first a/b/y date of this read: the rest of the file (from
            # where this read started) is scanned, and combined with what earlier runs saw.
            first, second, sep = _scan_day_month(
                self.path, start, self.limit, state.delimiter, columns
            )
            first, second, sep = first or prior[0], second or prior[1], prior_sep or sep
            order = decide_date_order(first, second, sep)
            if prior_order is not None and order != prior_order:
                raise _Restart(
                    f"new rows change the day/month order from {prior_order} to {order}; "
                    "re-reading the whole file"
                )
            state.dm_evidence, state.date_sep, state.date_order = [first, second], sep, order
            state.date_order_from = "data" if first or second else "default"
            if order == "mixed":
                self.warnings.append(
                    f"csv: {self.path}: the file mixes day-first and month-first dates; "
                    "rows with an ambiguous day/month are rejected"
                )
            elif not (first or second):
                self.warnings.append(
                    f"csv: {self.path}: no date decides the day/month order; using "
                    f"{'month' if order == 'mdy' else 'day'}-first for {sep!r}-separated dates"
                )
            return order

        return _DateParser(None, decide, unix_column=layout.date_is_unix)

    def _rows(
        self,
        reader: CsvReader,
        feed: _LineFeed,
        parse: RowParser,
        base_line: int,
    ) -> Iterator[Batch]:
        path, header, batch_size = self.path, self.state.header or [], self.batch_size
        reader_next = reader.__next__
        rows: list[list[str]] = []
        records: dict[str, MarketRecord] = {}  # by source_id: a repeat within a batch replaces
        rejects: list[Reject] = []
        first_line = 0
        end, lines = feed.pos, reader.line_num  # after the last handled row
        before_end, before_lines = end, lines  # before the last data row (for a partial tail)
        while True:
            try:
                row = reader_next()
            except StopIteration:
                break
            except csv.Error as exc:
                row, reason = [], f"malformed CSV: {exc}"
            else:
                reason = ""
                if not row:  # a blank line
                    end = before_end = feed.pos
                    lines = before_lines = reader.line_num
                    continue
            if len(rows) == batch_size:
                yield self._batch(rows, records, rejects, first_line, end, base_line + lines)
                rows, records, rejects = [], {}, []
            line = base_line + lines + 1
            if not rows:
                first_line = line
            rows.append(row)
            result = reason or parse(row, line)
            if isinstance(result, str):
                rejects.append(
                    Reject(
                        source_key=f"{path}:{line}",
                        payload={"header": header, "row": row, "line": line},
                        reason=result,
                    )
                )
            else:
                records[f"{line}"] = result
            before_end, before_lines = end, lines
            end, lines = feed.pos, reader.line_num
        if end == self.limit and end > 0 and rows and not _ends_with_newline(feed.file, end):
            # The last row has no newline: processed, but the next run resumes before it.
            end, lines = before_end, before_lines
        if feed.latin1_line:
            self.warnings.append(
                f"csv: {path}: line {base_line + feed.latin1_line} and maybe later ones are not "
                "UTF-8; decoded as Latin-1"
            )
        self.state.eof = True
        yield self._batch(rows, records, rejects, first_line, end, base_line + lines)

    def _batch(
        self,
        rows: list[list[str]],
        records: dict[str, MarketRecord],
        rejects: list[Reject],
        first_line: int,
        offset: int,
        line: int,
    ) -> Batch:
        state = self.state
        state.offset, state.line = offset, line
        newest = max((r.source_timestamp for r in records.values()), default=None)
        if newest is not None and (self.max_ts is None or newest > self.max_ts):
            self.max_ts = newest
            iso = newest.isoformat().replace("+00:00", "Z")
            if state.last_timestamp is None or iso > state.last_timestamp:
                state.last_timestamp = iso
        self.run.states[self.path] = state
        duplicates = len(rows) - len(rejects) - len(records)
        if duplicates:
            self.warnings.append(
                f"csv: {self.path}: {duplicates} rows repeat a symbol and timestamp of the same "
                f"batch (lines {first_line}-{first_line + len(rows) - 1}); the later row wins"
            )
        raw = (
            [
                RawPayload(
                    source_key=self.path,
                    payload={"header": state.header, "first_line": first_line, "rows": rows},
                )
            ]
            if rows
            else []
        )
        return Batch(
            raw=raw,
            records=[*records.values()],
            rejects=rejects,
            cursor=self.run.cursor(),
            processed=len(rows),
            warnings=self._take_warnings(),
        )


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


class CsvSource:
    """Market observations from CSV files (see the module doc for every rule)."""

    source_type: ClassVar[SourceType] = "csv"

    def __init__(self, settings: Settings) -> None:
        self._paths = tuple(settings.csv_paths)
        self._column_map = parse_column_map(settings.csv_column_map)

    @property
    def column_map(self) -> ColumnMap:
        return self._column_map

    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        """Yield each file's new rows in batches; each batch carries the complete cursor.

        File reading and parsing run in a worker thread, one batch at a time, so the event
        loop stays responsive while a large file is read.
        """
        batches = self.iter_batches(cursor, batch_size)
        try:
            while True:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    return
                yield batch
        finally:
            # After a cancellation the worker thread may still be inside next(): closing then
            # raises ValueError; the generator (and its open file) is collected later instead.
            with contextlib.suppress(ValueError):
                batches.close()

    def iter_batches(self, cursor: JsonDict, batch_size: int) -> Generator[Batch, None, None]:
        """The synchronous core of :meth:`batches` (also used by the benchmark)."""
        batch_size = max(1, batch_size)
        previous = _load_states(cursor)
        paths, warnings = resolve_paths(self._paths)
        # Entries of files no longer listed are dropped; the others are carried unchanged
        # until their file is read, so every batch holds the complete cursor.
        run = _Run({p: previous[p] for p in paths if p in previous})
        if warnings:
            yield Batch(cursor=run.cursor(), warnings=warnings)
        for path in paths:
            yield from self._file_batches(run, path, previous.get(path), batch_size)

    def _file_batches(
        self, run: _Run, path: str, prev: FileState | None, batch_size: int
    ) -> Iterator[Batch]:
        try:
            st = os.stat(path)
        except OSError as exc:  # vanished between listing and reading
            yield Batch(cursor=run.cursor(), warnings=[f"csv: {path}: cannot stat: {exc}"])
            return
        options = self._column_map.options_for(path)
        plan, note = _plan(prev, st, _options_hash(options))
        if plan == "skip":
            return
        reader = _FileReader(
            run, path, prev if plan == "resume" else None, options, batch_size, note
        )
        yield from reader.batches(st)
