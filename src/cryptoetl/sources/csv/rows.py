"""Rows -> market records: each row's series (cached per symbol cell) and its values.

Per row: the timestamp (the date column, else the text fallback of a unix column), the series
(symbol/name/quote cells -> a template record, cached), the numbers (all value cells in one
msgspec JSON decode; the careful parser of :mod:`.numbers` only for rows that need it), a few
checks, one ``msgspec.structs.replace`` of the template. Everything that depends only on the
file is bound once in :func:`make_row_parser`.

A row is rejected when its date or a number does not parse, it has no price and no other
value, its price is 0 or below (exports such as blockchain.info write 0 for days before any
market existed; a 0 in a price series corrupts every min/average/return computed from it), or
a volume or market cap is negative.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Final, NamedTuple

import msgspec

from cryptoetl.sources.base import MarketRecord
from cryptoetl.sources.csv.dates import DateParser
from cryptoetl.sources.csv.layout import CsvLayout
from cryptoetl.sources.csv.numbers import parse_number
from cryptoetl.sources.csv.series import SeriesFacts
from cryptoetl.sources.csv.stream import echo
from cryptoetl.sources.csv.symbols import coin_for_name, split_pair

SERIES_CACHE_SIZE: Final = 4096
_PLACEHOLDER_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CODE_RE: Final = re.compile(r"[A-Z0-9]{2,10}")

RowParser = Callable[[list[str]], MarketRecord]
Numbers = tuple[
    float | None, float | None, float | None, float | None,
    float | None, float | None, float | None, float | None,
]  # fmt: skip
# The value columns of a row, in this order (-1: absent).
NUMBER_FIELDS: Final = ("price", "market_cap", "open", "high", "low", "change", "volume_base",
                        "volume_quote")  # fmt: skip


class RowRejected(ValueError):
    """A row that cannot become a record; the message is the reason."""


class RowSeries(NamedTuple):
    """A row's series: its template record, and how to read its numbers in one call: the
    value cells (``cells``), a JSON array template with a ``%s`` per present column and
    ``null`` for the others (``array``), and the columns themselves (for the careful path)."""

    template: MarketRecord
    cells: Callable[[list[str]], object]
    array: str
    columns: tuple[int, ...]


def number_reader(columns: Sequence[int]) -> tuple[Callable[[list[str]], object], str]:
    """(cells getter, JSON array template) for value ``columns`` (-1: absent)."""
    present = [c for c in columns if c >= 0]
    array = "[" + ",".join("%s" if c >= 0 else "null" for c in columns) + "]"
    if not present:
        return _no_cells, array
    getter = itemgetter(*present)
    return (lambda row: (getter(row),)) if len(present) == 1 else getter, array


def key_fields(layout: CsvLayout) -> tuple[tuple[str, int], ...]:
    """(field, column) of the cells that decide a row's series (none: one for the file)."""
    pairs = (("symbol", layout.symbol), ("name", layout.name), ("quote", layout.quote))
    return tuple(pair for pair in pairs if pair[1] >= 0)


def key_columns(layout: CsvLayout) -> tuple[int, ...]:
    return tuple(column for _, column in key_fields(layout))


class SeriesResolver:
    """Symbol/name/quote cells -> :class:`RowSeries` (RowRejected when they name no coin).

    ``key_columns`` are the cells that decide a row's series (none: one series per file).
    ``warnings`` receives, once per file, what could not be known (a quote, a volume unit).
    """

    def __init__(
        self,
        layout: CsvLayout,
        facts: SeriesFacts,
        *,
        declared_quote: str | None,
        file_name: str,
        warnings: list[str],
    ) -> None:
        self.layout = layout
        self.facts = facts
        self.declared_quote = declared_quote
        self.file_name = file_name
        self.warnings = warnings
        self.key_columns = key_columns(layout)
        self.cache: dict[object, RowSeries] = {}
        self._infos: dict[str, dict[str, str]] = {}  # how the quote was found -> series_info
        self._said: set[str] = set()

    def resolve(self, key: object) -> RowSeries:
        """The series of a row whose key cells are ``key`` (what ``itemgetter`` returns);
        RowRejected when they name none."""
        cells: tuple[str, ...] = (
            (key,) if isinstance(key, str) else key if isinstance(key, tuple) else ()
        )
        fields = (field for field, _ in key_fields(self.layout))
        series = self._resolve(dict(zip(fields, cells, strict=True)))
        if len(self.cache) >= SERIES_CACHE_SIZE:
            self.cache.clear()
        self.cache[key] = series
        return series

    def _resolve(self, cells: dict[str, str]) -> RowSeries:
        layout = self.layout
        symbol_cell, name_cell = cells.get("symbol", "").strip(), cells.get("name", "").strip()
        raw = symbol_cell if layout.symbol >= 0 else name_cell
        pair_quote: str | None = None
        if layout.symbol < 0 and layout.name < 0:
            base = layout.default_symbol or ""
        elif not raw:
            column = layout.header[layout.symbol if layout.symbol >= 0 else layout.name]
            kind = "symbol" if layout.symbol >= 0 else "coin name"
            raise RowRejected(f"empty {kind} in column {echo(column)!r}")
        else:
            known = coin_for_name(raw)
            base, pair_quote = (known, None) if known else split_pair(raw.upper())
            if known is None and layout.symbol < 0:
                base = "-".join(base.split())  # an unknown coin name: "Some Coin" -> SOME-COIN
            if base.isdigit():  # an id (CoinMarketCap's 2781 is USD), never a coin
                column = layout.header[layout.symbol if layout.symbol >= 0 else layout.name]
                raise RowRejected(
                    f"{echo(raw)!r} in column {echo(column)!r} is a number, not a coin; declare "
                    f"the coin with CSV_COLUMN_MAP={self.file_name}:default_symbol=<SYMBOL>"
                )
        # A ticker in a name column ("BTC") is no name.
        name = name_cell if name_cell.lower() != base.lower() else None
        quote, how = self._quote(base, pair_quote, cells.get("quote"))
        info = self._infos.get(how)
        if info is None:
            info = self._infos[how] = {**self.facts.info, "quote": how}
        template = MarketRecord(
            source_type="csv",
            venue=self.facts.venue,
            symbol=base,
            quote=quote,
            interval=self.facts.interval,
            source_timestamp=_PLACEHOLDER_TIME,
            name=name or None,
            series_info=info,
        )
        columns = (layout.price, layout.market_cap, layout.open, layout.high, layout.low,
                   layout.change, *self._volume_columns(base, quote))  # fmt: skip
        return RowSeries(template, *number_reader(columns), columns)

    def _quote(
        self, base: str, pair_quote: str | None, quote_cell: str | None
    ) -> tuple[str | None, str]:
        row_quote, how = pair_quote, "symbol pair"
        if quote_cell is not None:
            row_quote, how = self._quote_from_cell(quote_cell.strip()), "quote column"
        declared, file_quote = self.declared_quote, self.facts.quote
        if declared is not None:
            if row_quote not in (None, declared):
                self._say(
                    f"the rows name the quote {row_quote}; CSV_COLUMN_MAP quote={declared} wins"
                )
            return declared, "CSV_COLUMN_MAP"
        if row_quote is not None:
            if file_quote not in (None, row_quote):
                self._say(
                    f"rows of {base} are quoted in {row_quote} while the file says {file_quote}; "
                    "each row's own quote is used"
                )
            return row_quote, how
        if file_quote is None:
            self._say(
                "the quote currency of the prices is unknown: they are stored without one (never "
                f"as USD); declare it with CSV_COLUMN_MAP={self.file_name}:quote=<CODE>"
            )
        return file_quote, self.facts.info.get("quote", "unknown")

    def _quote_from_cell(self, cell: str) -> str | None:
        codes = self.layout.quote_codes
        if codes is not None:
            quote = codes.get(cell)
            if quote is None:
                self._say(f"quote currency id {echo(cell)!r} is not known (only {sorted(codes)})")
            return quote
        return cell.upper() if _CODE_RE.fullmatch(cell.upper()) else None

    def _volume_columns(self, base: str, quote: str | None) -> tuple[int, int]:
        layout = self.layout
        explicit = [c for c in (layout.volume_base, layout.volume_quote) if c >= 0]
        candidates = explicit + [c for c, _ in layout.volumes]
        found: dict[str, int] = {}
        for column in candidates:
            unit = layout.unit_of_volume(column, base, quote)
            if unit is not None:
                found.setdefault(unit, column)
            else:
                self._say_volume_unknown(column, base, quote)
        return found.get("base", -1), found.get("quote", -1)

    def _say_volume_unknown(self, column: int, base: str, quote: str | None) -> None:
        name = echo(self.layout.header[column])
        tag = dict(self.layout.volumes).get(column)
        if tag is None:
            self._say(
                f"the unit of column {name!r} is unknown (base or quote currency?): its volumes "
                f"are left empty; declare CSV_COLUMN_MAP={self.file_name}:volume_unit=base|quote"
            )
        else:
            self._say(
                f"column {name!r} is in {tag}, neither the base {base} nor the quote "
                f"{quote or '(unknown)'}: its volumes are left empty"
            )

    def _say(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.warnings.append(message)


def timestamp_getter(layout: CsvLayout, dates: DateParser) -> Callable[[Sequence[str]], datetime]:
    """Row -> timestamp (RowRejected naming the column); the text date backs up a unix cell."""
    header, di, fallback = layout.header, layout.date, layout.date_fallback
    parse = dates.parse

    def timestamp(row: Sequence[str]) -> datetime:
        try:
            return parse(row[di])
        except ValueError as exc:
            reason = f"bad date in column {echo(header[di])!r}: {echo(row[di])!r} ({exc})"
            if fallback < 0 or not row[fallback].strip():
                raise RowRejected(reason) from None
            try:  # an unusable unix cell: the row's text date still identifies it
                return parse(row[fallback])
            except ValueError:
                raise RowRejected(reason) from None

    return timestamp


def make_row_parser(
    layout: CsvLayout,
    dates: DateParser,
    resolver: SeriesResolver,
    *,
    decimal_comma: bool = False,
    iso_suffix: str | None = None,
) -> RowParser:
    """A function turning one data row into a MarketRecord; RowRejected says why it cannot.

    ``iso_suffix`` (see :func:`.dates.naive_iso_suffix`): the file's dates are naive ISO, so
    ``fromisoformat(cell + suffix)`` parses them as UTC in one call (cheaper than any cache);
    a cell it does not take goes the general way.
    """
    header, di = layout.header, layout.date
    price_name = echo(header[layout.price]) if layout.price >= 0 else "price"
    cache_get = dates.cache.get
    from_iso = datetime.fromisoformat
    timestamp = timestamp_getter(layout, dates)
    key_columns = resolver.key_columns
    key_of: Callable[[list[str]], object] = itemgetter(*key_columns) if key_columns else _no_key
    series_get, resolve = resolver.cache.get, resolver.resolve
    fixed = resolve(None) if not key_columns else None  # one series for the whole file
    replace = msgspec.structs.replace
    decode = msgspec.json.Decoder(Numbers).decode

    def careful(row: list[str], columns: Sequence[int]) -> Numbers:
        """Cell by cell (thousands separators, suffixes, placeholders), naming the column
        that does not parse."""
        values: list[float | None] = []
        for col in columns:
            try:
                values.append(parse_number(row[col], decimal_comma) if col >= 0 else None)
            except ValueError as exc:
                raise RowRejected(
                    f"bad number in column {echo(header[col])!r}: {echo(row[col])!r} ({exc})"
                ) from None
        return tuple(values)  # type: ignore[return-value]

    def parse(row: list[str]) -> MarketRecord:
        if iso_suffix is not None:
            try:
                when = from_iso(row[di] + iso_suffix)
            except ValueError:
                when = timestamp(row)
        else:
            when = cache_get(row[di]) or timestamp(row)
        template, cells, array, columns = fixed or series_get(key := key_of(row)) or resolve(key)
        try:
            # Plain numbers in one C call. Each cell fills one slot or the array is invalid
            # (a cell "1,5" makes 9 values, an empty one ",,"), and JSON has no NaN or inf.
            numbers = decode(array % cells(row))
        except msgspec.DecodeError:  # "8,746.6", "1.38M", "-", "": the careful path
            numbers = careful(row, columns)
        price, mcap, open_, high, low, change, vbase, vquote = numbers
        if price is None:
            if (
                mcap is None
                and vbase is None
                and vquote is None
                and open_ is None
                and (high is None and low is None)
            ):
                raise RowRejected(f"no price in column {price_name!r} and no other value")
        elif price <= 0:
            cell = echo(row[columns[0]])
            raise RowRejected(f"non-positive price in column {price_name!r}: {cell!r}")
        if (mcap or 0.0) < 0 or (vbase or 0.0) < 0 or (vquote or 0.0) < 0:
            raise RowRejected(_negative(header, row, columns, numbers))
        return replace(
            template,
            source_timestamp=when,
            price=price,
            open=open_,
            high=high,
            low=low,
            volume_base=vbase,
            volume_quote=vquote,
            market_cap=mcap,
            change_pct=change,
        )

    return parse


def _no_cells(row: list[str]) -> tuple[()]:
    return ()


def _no_key(row: list[str]) -> None:
    return None


def _negative(
    header: Sequence[str], row: Sequence[str], columns: Sequence[int], numbers: Numbers
) -> str:
    field, column = next(
        (field, col)
        for field, col, value in zip(NUMBER_FIELDS, columns, numbers, strict=True)
        if field in ("market_cap", "volume_base", "volume_quote") and (value or 0.0) < 0
    )
    kind = "market cap" if field == "market_cap" else "volume"
    return f"negative {kind} in column {echo(header[column])!r}: {echo(row[column])!r}"
