"""CSV_COLUMN_MAP: what an operator declares about files that cannot tell it themselves.

::

    CSV_COLUMN_MAP = entry *(";" entry)
    entry          = file-pattern ":" option *("," option)
    option         = field "=" header-name          ; the column that holds a field (below)
                   / "default_symbol=" SYMBOL       ; the base coin of a file without a symbol
                   / "date_order=" ("dmy" | "mdy")  ; when the rows cannot decide it
                   / "venue=" NAME                  ; binance, gemini, coinmarketcap, ...
                   / "quote=" CODE                  ; the currency prices are in: USD, USDT, BTC
                   / "interval=" INTERVAL           ; 1m, 15m, 1h, 4h, 1d, 1w (or daily, hourly)
                   / "volume_unit=" ("base" | "quote") ; the unit of a plain "Volume" column
                   / "header=" NAME *("|" NAME)     ; the header of a headerless file

    fields: date symbol name price market_cap volume volume_base volume_quote open high low
            change

    e.g.  market-price.csv:header=Date|Value,default_symbol=BTC,quote=USD,venue=blockchain.info

A pattern without "/" is matched (fnmatch, case-insensitive) against the file name, with "/"
against the absolute path; the first matching entry wins. Header names are matched like the
aliases (case, spaces and ``_-.()[]/:*`` ignored) and cannot contain ``,`` ``;`` (nor ``|`` in
``header=``). Every declared value wins over what the file seems to say (a warning names the
disagreement); changing a file's entry re-reads the file.
"""

from __future__ import annotations

import fnmatch
import os
import re
from typing import Final

import msgspec

from cryptoetl.config import ConfigError
from cryptoetl.sources.base import content_hash
from cryptoetl.sources.csv.dates import DateOrder
from cryptoetl.sources.csv.layout import MAPPABLE, VolumeUnit
from cryptoetl.sources.csv.series import Declared, parse_interval
from cryptoetl.sources.csv.symbols import normalize_symbol

_SYMBOL_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,19}")
_VENUE_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
_QUOTE_RE: Final = re.compile(r"[A-Z0-9]{2,10}")


class FileOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options of the files matching ``pattern`` (one CSV_COLUMN_MAP entry)."""

    pattern: str
    columns: dict[str, str] = msgspec.field(default_factory=dict)  # our field -> header name
    default_symbol: str | None = None
    date_order: DateOrder | None = None
    venue: str | None = None
    quote: str | None = None
    interval: str | None = None
    volume_unit: VolumeUnit | None = None
    header: tuple[str, ...] | None = None

    def matches(self, path: str) -> bool:
        target = path if "/" in self.pattern else os.path.basename(path)
        return fnmatch.fnmatchcase(target.lower(), self.pattern.lower())

    @property
    def declared(self) -> Declared:
        return Declared(venue=self.venue, quote=self.quote, interval=self.interval)


class ColumnMap(msgspec.Struct, frozen=True):
    """The parsed CSV_COLUMN_MAP: entries in the order given, the first match wins."""

    entries: tuple[FileOptions, ...] = ()

    def options_for(self, path: str) -> FileOptions | None:
        return next((entry for entry in self.entries if entry.matches(path)), None)


def options_hash(options: FileOptions | None) -> str:
    """A file's entry, hashed: a change forces a re-read."""
    return "" if options is None else content_hash(msgspec.to_builtins(options)).hex()[:16]


def _map_error(message: str) -> ConfigError:
    return ConfigError(
        f"CSV_COLUMN_MAP {message} (format: <file>:<option>=<value>,...;<file>:...; options: "
        f"{', '.join(MAPPABLE)}, default_symbol, date_order, venue, quote, interval, "
        "volume_unit, header; see README 'CSV files')"
    )


def _checked(pattern: str, key: str, value: str) -> object:
    """The typed value of option ``key`` (ConfigError naming the entry when malformed)."""
    if key == "default_symbol":
        if not _SYMBOL_RE.fullmatch(value):
            raise _map_error(f"default_symbol {value!r} of {pattern!r} is not a symbol")
        return normalize_symbol(value)
    if key == "venue":
        if not _VENUE_RE.fullmatch(value.lower()) or value.lower().startswith("file:"):
            raise _map_error(f"venue {value!r} of {pattern!r} must look like binance, gemini")
        return value.lower()
    if key == "quote":
        if not _QUOTE_RE.fullmatch(value.upper()):
            raise _map_error(f"quote {value!r} of {pattern!r} must be a currency code (USD)")
        return value.upper()
    if key == "interval":
        try:
            return parse_interval(value)
        except ValueError as exc:
            raise _map_error(f"interval of {pattern!r}: {exc}") from None
    if key in ("date_order", "volume_unit"):
        allowed = ("dmy", "mdy") if key == "date_order" else ("base", "quote")
        if value.lower() not in allowed:
            raise _map_error(f"{key} of {pattern!r} must be {' or '.join(allowed)}, got {value!r}")
        return value.lower()
    if key == "header":
        names = tuple(name.strip() for name in value.split("|"))
        if not all(names):
            raise _map_error(f"header of {pattern!r} has an empty column name: {value!r}")
        return names
    raise _map_error(f"has unknown option {key!r} for {pattern!r}")


def _parse_map_entry(entry: str) -> FileOptions:
    pattern, sep, body = entry.partition(":")
    pattern = pattern.strip()
    if not sep or not pattern:
        raise _map_error(f"entry {entry!r} must start with a file name or pattern and ':'")
    columns: dict[str, str] = {}
    values: dict[str, object] = {}
    for item in (part.strip() for part in body.split(",")):
        if not item:
            continue
        key, eq, value = (s.strip() for s in item.partition("="))
        key = key.lower()
        if not eq or not key or not value:
            raise _map_error(f"option {item!r} of {pattern!r} must look like key=value")
        if key in columns or key in values:
            raise _map_error(f"sets {key!r} twice for {pattern!r}")
        if key in MAPPABLE:
            columns[key] = value
        else:
            values[key] = _checked(pattern, key, value)
    if not columns and not values:
        raise _map_error(f"entry {entry!r} has no options")
    return msgspec.convert({"pattern": pattern, "columns": columns, **values}, FileOptions)


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
