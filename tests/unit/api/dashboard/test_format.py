"""The dashboard's formatters and its link filter."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cryptoetl.api.dashboard.format import (
    fmt_int,
    fmt_iso,
    fmt_pct,
    fmt_price,
    fmt_relative,
    safe_href,
)
from tests.unit.api.dashboard.helpers import NOW


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://news.example/a?b=1&c=2", "https://news.example/a?b=1&c=2"),
        ("http://x.example", "http://x.example"),
        ("javascript:alert(1)", None),
        ("JaVaScRiPt:alert(1)", None),
        (" javascript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("/relative/path", None),
        ("//evil.example/x", None),
        ("https://", None),
        ("http://[::1", None),  # unparseable
        ("", None),
        (None, None),
    ],
)
def test_only_http_urls_become_links(url: str | None, expected: str | None) -> None:
    assert safe_href(url) == expected


def test_formatting() -> None:
    assert fmt_int(1234567) == "1,234,567"
    assert fmt_int(None) == "—"
    assert fmt_price(69_163) == "69,163.00"
    assert fmt_price(0.312) == "0.3120"
    assert fmt_price(0.0000123) == "1.23e-05"
    assert fmt_price(float("inf")) == "—"
    assert fmt_pct(3.0612244) == "3.06%"
    assert fmt_pct(0.0188) == "0.019%"
    assert fmt_relative(NOW - timedelta(seconds=5), NOW) == "5 s ago"
    assert fmt_relative(NOW + timedelta(minutes=4, seconds=58), NOW) == "in 4 min 58 s"
    assert fmt_relative(None, NOW) == "—"
    assert fmt_iso(NOW) == "2025-03-01T12:00:00+00:00"
    assert fmt_iso(None) == ""
