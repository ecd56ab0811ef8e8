"""Layout detection: which column holds which field, and in which unit.

Header names are matched case-insensitively with aliases (:data:`ALIASES`), after removing a
BOM, splitting camelCase (``timeOpen`` is ``time open``) and turning ``_-.()[]/:*`` into
spaces. A trailing currency code is a **unit tag**: ``Close (USD)`` is the close in USD,
``Volume BTC`` a volume in BTC. The first alias that matches wins (``Close`` before
``Adj Close``, a candle's open time before a ``timestamp``); a ``unix`` column wins over a text
date, which stays the fallback for rows whose unix cell is unusable.

Volumes carry units (see :meth:`CsvLayout.unit_of_volume`): a tagged column is in the base when
its tag is the base coin and in the quote when it is the quote currency; ``volume from`` /
``volume to`` (CryptoCompare) and ``base``/``quote volume`` say it in words; a plain
``Volume`` is in the unit a known layout documents, or ``volume_unit=`` declares, else unknown.

Known layouts (identified by their header names; extra columns are fine):

* ``coinmarketcap`` -- ``timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;
  marketCap;timestamp``: the candle is keyed on ``timeOpen``; ``name`` is NOT the coin but
  CoinMarketCap's id of the convert currency (``2781`` = USD; other ids are not guessed);
  the coin is in the file name; volume and market cap are in the convert currency.
* ``coingecko`` -- ``snapped_at,price,market_cap,total_volume``: volume in the quote currency.
* ``investing.com`` -- ``Date,Price,Open,High,Low,Vol.,Change %``: ``Vol.`` in base units.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from cryptoetl.sources.base import SourceError
from cryptoetl.sources.csv.stream import echo_cells
from cryptoetl.sources.csv.symbols import QUOTE_CURRENCIES, facts_from_file_name

VolumeUnit = Literal["base", "quote"]

# Normalised names, in order of preference.
# fmt: off
ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "unix": ("unix", "unix timestamp", "unix time", "epoch", "unix ms", "timestamp ms"),
    "date": ("time open", "open time", "date", "datetime", "date utc", "timestamp", "time",
             "time utc", "day", "snapped at", "trade date"),
    "close_time": ("time close", "close time"),
    "symbol": ("symbol", "ticker", "pair", "asset", "instrument"),
    "name": ("name", "coin", "currency", "coin name", "crypto", "cryptocurrency", "slug"),
    "quote": ("quote", "quote currency", "quote asset", "vs currency", "counter currency"),
    "price": ("close", "closing price", "close price", "price", "last", "last price", "value",
              "rate", "adj close"),
    "market_cap": ("market cap", "marketcap", "market capitalization", "mcap", "cap"),
    "volume": ("volume", "vol", "volume 24h", "24h volume", "total volume", "volume24h"),
    "volume_base": ("volume from", "volumefrom", "base volume", "base asset volume",
                    "volume base"),
    "volume_quote": ("volume to", "volumeto", "quote volume", "quote asset volume",
                     "volume quote"),
    "open": ("open", "24h open", "open price"),
    "high": ("high", "24h high", "high price"),
    "low": ("low", "24h low", "low price"),
    "change": ("change %", "change", "% change", "%change", "change pct", "pct change",
               "percent change", "change 24h", "24h change", "change 24h %",
               "percent change 24h"),
}
# fmt: on
# Fields a user may map with CSV_COLUMN_MAP ``<field>=<header>`` (``quote=`` there declares
# the quote currency itself; a quote column is found by its aliases).
MAPPABLE: Final = tuple(f for f in ALIASES if f not in ("unix", "close_time", "quote"))
VALUE_FIELDS: Final = (
    "price",
    "market_cap",
    "volume",
    "volume_base",
    "volume_quote",
    "open",
    "high",
    "low",
)
_PRICE_LIKE: Final = ("market_cap", "open", "high", "low")
_EXACT: Final = frozenset(alias for aliases in ALIASES.values() for alias in aliases)
_PUNCTUATION: Final = str.maketrans(dict.fromkeys("_-.()[]/:*", " "))
_CAMEL: Final = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TAG_RE: Final = re.compile(r"[a-z][a-z0-9]{1,9}")


class KnownLayout(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    header: frozenset[str]  # normalised header names that identify it (others may follow)
    venue: str
    volume_unit: VolumeUnit
    quote_codes: dict[str, str] | None = None  # the ``name`` column holds the quote as codes


KNOWN_LAYOUTS: Final = (
    KnownLayout(
        name="coinmarketcap",
        header=frozenset(
            {
                "time open",
                "time close",
                "time high",
                "time low",
                "name",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "market cap",
                "timestamp",
            }
        ),
        venue="coinmarketcap",
        volume_unit="quote",
        quote_codes={"2781": "USD"},  # CoinMarketCap's id of the convert currency USD
    ),
    KnownLayout(
        name="coingecko",
        header=frozenset({"snapped at", "price", "market cap", "total volume"}),
        venue="coingecko",
        volume_unit="quote",
    ),
    KnownLayout(
        name="investing.com",
        header=frozenset({"date", "price", "open", "high", "low", "vol", "change %"}),
        venue="investing.com",
        volume_unit="base",
    ),
)


def norm_header(cell: str, *, split_camel: bool = True) -> str:
    """``"\\ufeffDate(UTC)"`` -> ``"date utc"``; ``"timeOpen"`` -> ``"time open"``."""
    text = cell.replace("\ufeff", "").strip()
    if split_camel:
        text = _CAMEL.sub(" ", text)
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def _split_tag(name: str) -> tuple[str, str | None]:
    """``"volume btc"`` -> (``"volume"``, ``"BTC"``); no tag when the last word is no code."""
    head, _, last = name.rpartition(" ")
    if head and _TAG_RE.fullmatch(last):
        return head, last.upper()
    return name, None


class _Columns:
    """The header's normalised names, and (name, unit tag) for value columns no alias claims."""

    def __init__(self, header: Sequence[str]) -> None:
        self.names = [norm_header(cell) for cell in header]
        self.tagged = [(None, None) if name in _EXACT else _split_tag(name) for name in self.names]

    def find(self, field: str, tag: str | None = None) -> tuple[int, str | None]:
        """(column, unit tag) of ``field``: an exact alias first, then a tagged value column
        (``tag`` first: the open/high/low in the price's currency)."""
        for alias in ALIASES[field]:
            if alias in self.names:
                return self.names.index(alias), None
        tagged = self._tagged(field)
        tagged.sort(key=lambda column: column[1] != tag)
        return tagged[0] if tagged else (-1, None)

    def volumes(self) -> list[tuple[int, str | None]]:
        """Every volume column: plain (``Volume``) or tagged (``Volume BTC``)."""
        plain = [(i, None) for i, name in enumerate(self.names) if name in ALIASES["volume"]]
        return sorted(plain + self._tagged("volume"))

    def _tagged(self, field: str) -> list[tuple[int, str | None]]:
        if field not in VALUE_FIELDS:
            return []
        names = ALIASES[field]
        return [(i, tag) for i, (name, tag) in enumerate(self.tagged) if tag and name in names]

    def index_of(self, header_name: str) -> int:
        wanted = norm_header(header_name)
        return self.names.index(wanted) if wanted in self.names else -1


class CsvLayout(msgspec.Struct, frozen=True, kw_only=True):
    """Where each field of a file lives (column indexes, -1 when absent) and its units."""

    header: tuple[str, ...]
    date: int
    date_fallback: int = -1  # the text date when ``date`` is a unix column
    date_is_unix: bool = False
    close_time: int = -1
    symbol: int = -1
    name: int = -1
    quote: int = -1  # a column of quote currencies (codes translated by quote_codes)
    quote_codes: dict[str, str] | None = None
    price: int = -1
    market_cap: int = -1
    open: int = -1
    high: int = -1
    low: int = -1
    change: int = -1
    volumes: tuple[tuple[int, str | None], ...] = ()  # every volume column and its unit tag
    volume_base: int = -1
    volume_quote: int = -1
    volume_unit: VolumeUnit | None = None  # of an untagged volume column
    volume_unit_from: str | None = None
    header_quote: str | None = None  # the currency tag of the price column
    venue: str | None = None  # of a known layout
    known: str | None = None
    default_symbol: str | None = None
    symbol_origin: str = "column"  # column | name column | CSV_COLUMN_MAP | file name

    @property
    def needed(self) -> int:
        """Cells a row must have to reach every column read."""
        columns = (
            self.date,
            self.date_fallback,
            self.close_time,
            self.symbol,
            self.name,
            self.quote,
            self.price,
            self.market_cap,
            self.open,
            self.high,
            self.low,
            self.change,
            self.volume_base,
            self.volume_quote,
            *(c for c, _ in self.volumes),
        )
        return 1 + max(columns)

    def unit_of_volume(self, column: int, base: str, quote: str | None) -> VolumeUnit | None:
        """The unit of a volume column for a series of ``base`` in ``quote`` (None: unknown)."""
        if column == self.volume_base:
            return "base"
        if column == self.volume_quote:
            return "quote"
        tag = dict(self.volumes).get(column)
        if tag is None:
            return self.volume_unit
        return "base" if tag == base else "quote" if tag == quote else None


def looks_like_header(row: Sequence[str], columns: Mapping[str, str] | None = None) -> bool:
    """A row with a recognisable date column and at least one value column."""
    found = _Columns(row)

    def present(field: str) -> bool:
        if columns and field in columns:
            return found.index_of(columns[field]) >= 0
        return found.find(field)[0] >= 0

    return (present("unix") or present("date")) and any(map(present, VALUE_FIELDS))


def _known_layout(found: _Columns) -> KnownLayout | None:
    names = frozenset(found.names)
    return next((k for k in KNOWN_LAYOUTS if k.header <= names), None)


def detect_layout(
    header: Sequence[str],
    path: str,
    *,
    columns: Mapping[str, str] | None = None,
    default_symbol: str | None = None,
    volume_unit: VolumeUnit | None = None,
    tolerate_no_symbol: bool = False,
) -> CsvLayout:
    """Column indexes and units of a file from its header; SourceError when unusable.

    ``columns`` maps fields to header names (CSV_COLUMN_MAP), ``default_symbol`` is the
    declared coin, ``volume_unit`` the declared unit of an untagged volume column.
    """
    found = _Columns(header)
    known = _known_layout(found)
    index: dict[str, tuple[int, str | None]] = {}
    for field, name in (columns or {}).items():
        column = found.index_of(name)
        if column < 0:
            hint = f" (for a fixed symbol use default_symbol={name})" if field == "symbol" else ""
            raise SourceError(
                f"{path}: CSV_COLUMN_MAP maps {field} to column {name!r}, but the header "
                f"{echo_cells(header)} has no such column{hint}"
            )
        index[field] = (column, found.tagged[column][1])
    index.setdefault("price", found.find("price"))
    price_tag = index["price"][1]
    for field in ALIASES:
        if field not in index and field != "volume":
            index[field] = found.find(field, price_tag if field in _PRICE_LIKE else None)
    # A declared ``volume=`` column is the only plain volume; otherwise every volume column.
    volumes = [index["volume"]] if "volume" in index else found.volumes()
    unix = -1 if "date" in (columns or {}) else index["unix"][0]
    date, fallback = (unix, index["date"][0]) if unix >= 0 else (index["date"][0], -1)
    value_columns = [index[f][0] for f in VALUE_FIELDS if f != "volume"]
    if date < 0 or (all(c < 0 for c in value_columns) and not volumes):
        raise SourceError(
            f"{path}: no recognisable date and price/value columns in the header "
            f"{echo_cells(header)}"
        )
    symbol, coin_name, quote = index["symbol"][0], index["name"][0], index["quote"][0]
    if known is not None and known.quote_codes is not None:
        coin_name, quote = -1, coin_name  # CoinMarketCap: "name" is the convert currency's id
    origin = "column" if symbol >= 0 else "name column"
    if symbol < 0 and coin_name < 0:
        default_symbol, origin = _default_symbol(path, default_symbol, tolerate_no_symbol)
    unit_from = "CSV_COLUMN_MAP" if volume_unit else None
    if volume_unit is None and known is not None:
        volume_unit, unit_from = known.volume_unit, f"layout {known.name}"
    return CsvLayout(
        header=tuple(header),
        date=date,
        date_fallback=fallback,
        date_is_unix=unix >= 0,
        close_time=index["close_time"][0],
        symbol=symbol,
        name=coin_name,
        quote=quote,
        quote_codes=known.quote_codes if known else None,
        price=index["price"][0],
        market_cap=index["market_cap"][0],
        open=index["open"][0],
        high=index["high"][0],
        low=index["low"][0],
        change=index["change"][0],
        volumes=tuple(volumes),
        volume_base=index["volume_base"][0],
        volume_quote=index["volume_quote"][0],
        volume_unit=volume_unit,
        volume_unit_from=unit_from,
        header_quote=price_tag if price_tag in QUOTE_CURRENCIES else None,
        venue=known.venue if known else None,
        known=known.name if known else None,
        default_symbol=default_symbol,
        symbol_origin=origin,
    )


def _default_symbol(path: str, declared: str | None, tolerate: bool) -> tuple[str | None, str]:
    if declared:
        return declared, "CSV_COLUMN_MAP"
    base = facts_from_file_name(path).base
    if base is not None:
        return base, "file name"
    if tolerate:
        return None, "unknown"
    file_name = path.rsplit("/", 1)[-1]
    raise SourceError(
        f"{path}: no symbol column, no default symbol, and the file name does not clearly name "
        f"one well-known coin; set CSV_COLUMN_MAP={file_name}:default_symbol=<SYMBOL>"
    )
