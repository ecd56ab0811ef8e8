"""Timestamps as exports write them; every result is timezone-aware UTC (naive = UTC).

* ISO dates/datetimes (offsets converted), ``Jan 14, 2020``/``14 Jan 2020``/``14-Jan-20``,
  ``M/D/YY``, ``DD-MM-YY``, ``DD.MM.YYYY``, ``YYYY/M/D``, ``YYYYMMDD``, optional
  ``HH:MM[:SS] [AM|PM] [UTC]``.
* All-digit values are unix epochs whose unit is decided per value by magnitude: < 1e11
  seconds, < 1e14 milliseconds, < 1e17 microseconds, else nanoseconds (so seconds and
  milliseconds may mix in one column). An epoch in exponent notation (``1.56869E+12``, what
  Excel shows for a 13-digit number and writes back when the file is re-saved) has lost its
  last digits (here up to 1.4 hours): it is refused, so the row's text date is used instead,
  or the row is rejected when it has none.
* Two-digit years: 00-68 -> 2000-2068, 69-99 -> 1969-1999 (the POSIX ``%y`` pivot).
* Day/month order of ``a/b/y``-style dates is decided per file from ALL its rows (a streaming
  pre-pass, :func:`scan_day_month`): a first part > 12 anywhere -> day-first; a second part > 12
  anywhere -> month-first; both -> the file is inconsistent: unambiguous rows are read as they
  evidently are and ambiguous rows (both parts <= 12 and different) are rejected; never
  decidable -> month-first for ``/`` and day-first for ``-`` and ``.`` (US vs European
  conventions). ``date_order`` in CSV_COLUMN_MAP overrides it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

DateOrder = Literal["dmy", "mdy"]
# "mixed": the file has both day-first and month-first evidence (see module doc).
FileDateOrder = Literal["dmy", "mdy", "mixed"]

CACHE_SIZE: Final = 8192  # bounded: multi-coin files repeat each date once per coin
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
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


def from_epoch(value: int | float) -> datetime:
    """Unix time whose unit is decided by magnitude (s, ms, us, ns); integers stay exact."""
    size = abs(value)
    try:
        if isinstance(value, int):
            if size >= 10**17:
                return _EPOCH + timedelta(0, 0, value // 1000)
            if size >= 10**14:
                return _EPOCH + timedelta(0, 0, value)
            if size >= 10**11:
                return _EPOCH + timedelta(0, value // 1000, value % 1000 * 1000)
            return _EPOCH + timedelta(0, value)
        scale = 1e-9 if size >= 1e17 else 1e-6 if size >= 1e14 else 1e-3 if size >= 1e11 else 1
        return _EPOCH + timedelta(0, value * scale)
    except OverflowError:
        raise ValueError("unix time out of range") from None


def _float_epoch(text: str) -> datetime:
    if "e" in text or "E" in text:
        raise ValueError("unix time in exponent notation (as Excel re-saves it) has lost digits")
    return from_epoch(float(text))


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


def _iso(s: str) -> datetime:
    """A strict ISO date or datetime; the common naive forms are parsed as UTC in one call
    (``replace(tzinfo=...)`` costs more than the whole parse)."""
    if len(s) == 10:
        return datetime.fromisoformat(s + "T00:00+00:00")
    if len(s) == 19 and s[10] in " T":
        return datetime.fromisoformat(s + "+00:00")
    value = datetime.fromisoformat(s)
    if value.tzinfo is None:
        return _EPOCH + (value - _NAIVE_EPOCH)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def naive_iso_suffix(cells: Sequence[str]) -> str | None:
    """What makes each of ``cells`` a UTC ISO datetime for ``fromisoformat`` (``+00:00`` for
    ``YYYY-MM-DD HH:MM:SS``, ``T00:00+00:00`` for ``YYYY-MM-DD``), when they all share it."""
    if cells and all(
        len(c) == 19 and c[4] == c[7] == "-" and c[10] in " T" and c[13] == c[16] == ":"
        for c in cells
    ):
        return "+00:00"
    if cells and all(len(c) == 10 and c[4] == c[7] == "-" for c in cells):
        return "T00:00+00:00"
    return None


def day_month_parts(text: str) -> tuple[int, int, str] | None:
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


class DateParser:
    """Date cells -> UTC datetimes, with the day/month order of one file.

    ``order`` is None until the first ``a/b/y`` value; then ``decide`` (the file's streaming
    pre-pass) fixes it for the whole file. Without ``decide`` (single values) each value
    decides for itself, falling back to the separator convention. ``cache`` (text -> value)
    may be read directly by a hot loop; :meth:`parse` fills it.
    """

    __slots__ = ("_decide", "_unix_column", "cache", "order")

    def __init__(
        self,
        order: FileDateOrder | None = None,
        decide: Callable[[], FileDateOrder] | None = None,
        unix_column: bool = False,
    ) -> None:
        self.order = order
        self._decide = decide
        self._unix_column = unix_column
        self.cache: dict[str, datetime] = {}

    def parse(self, text: str) -> datetime:
        hit = self.cache.get(text)
        if hit is not None:
            return hit
        value = self._parse(text.strip())
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()
        self.cache[text] = value
        return value

    def _parse(self, s: str) -> datetime:
        if not s:
            raise ValueError("empty")
        first = s[0]
        if first.isdigit():
            if s.isdigit():
                return self._digits(s)
            if len(s) >= 10 and s[4] == "-" and s[:4].isdigit():
                try:
                    return _iso(s)
                except ValueError:
                    return self._separated(s)  # not strict ISO ("2020-1-5"): the general forms
            return self._separated(s)
        if first in "+-":
            return _float_epoch(s)
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
        return from_epoch(int(s))

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
        return _float_epoch(s)  # "1634428800.0"

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


def decide_date_order(first_gt12: bool, second_gt12: bool, sep: str | None) -> FileDateOrder:
    """The day/month rule of the module doc, from a file's evidence."""
    if first_gt12 and second_gt12:
        return "mixed"
    if first_gt12:
        return "dmy"
    if second_gt12:
        return "mdy"
    return "mdy" if sep == "/" else "dmy"


def scan_day_month(
    rows: Iterable[Sequence[str]], columns: Sequence[int]
) -> tuple[bool, bool, str | None]:
    """(some first part > 12, some second part > 12, first separator) over ``rows``; stops
    as soon as both are seen."""
    first_gt = second_gt = False
    sep: str | None = None
    for row in rows:
        for col in columns:
            parts = day_month_parts(row[col]) if col < len(row) else None
            if parts is not None:
                a, b, found = parts
                sep = sep or found
                first_gt = first_gt or a > 12
                second_gt = second_gt or b > 12
        if first_gt and second_gt:
            break
    return first_gt, second_gt, sep
