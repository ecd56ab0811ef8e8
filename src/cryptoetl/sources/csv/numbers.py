"""Numbers as spreadsheets and exchanges write them.

Thousands separators (``8,746.6``, ``1.234,5``; ``1,5`` is a decimal comma, and so is every
lone comma in ``;``-delimited files, where ``0,312`` means 0.312; a lone dot is always a
decimal point, even there), ``K``/``M``/``B``/``T`` suffixes, ``%``, a leading ``$``, and
placeholders (blank, ``-``, ``null``, ``NaN``, ...) -> None. Infinity is no number.
"""

from __future__ import annotations

from typing import Final

PLACEHOLDERS: Final = frozenset(
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
    if t.lower() in PLACEHOLDERS:
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
