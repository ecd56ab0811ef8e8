"""Numbers as spreadsheets and exchanges write them (sources/csv/numbers.py)."""

from __future__ import annotations

import pytest

from cryptoetl.sources.csv.numbers import parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8746.6", 8746.6),
        ("8,746.6", 8746.6),
        ("1,234,567.5", 1234567.5),
        ("1,234", 1234.0),
        ("1.234,5", 1234.5),
        ("1,5", 1.5),
        ("1.2K", 1200.0),
        ("610.66K", 610660.0),
        ("3.4M", 3400000.0),
        ("1.38M", 1380000.0),
        ("2.1B", 2100000000.0),
        ("7.83%", 7.83),
        ("-0.93%", -0.93),
        ("$1,234.50", 1234.5),
        ("6.72E+11", 6.72e11),
        (" 42 ", 42.0),
        ("", None),
        ("   ", None),
        ("-", None),
        ("--", None),
        ("null", None),
        ("N/A", None),
        ("NaN", None),
    ],
)
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


def test_parse_number_decimal_comma_in_european_files() -> None:
    assert parse_number("0,312") == 312.0  # comma files: 3-digit group = thousands
    assert parse_number("0,312", decimal_comma=True) == pytest.approx(0.312)
    assert parse_number("1.234,56", decimal_comma=True) == pytest.approx(1234.56)


@pytest.mark.parametrize("text", ["abc", "1,2,3,4", "inf", "-Infinity", "12abc", "1.2.3"])
def test_parse_number_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked via rejects
        parse_number(text)
