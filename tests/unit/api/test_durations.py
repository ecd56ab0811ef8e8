"""Durations as the status reasons and the dashboard print them."""

from __future__ import annotations

import math

from cryptoetl.api.durations import fmt_duration


def test_durations_read_in_at_most_two_units() -> None:
    assert fmt_duration(0.42) == "0.42 s"
    assert fmt_duration(12.34) == "12.3 s"
    assert fmt_duration(60) == "1 min"
    assert fmt_duration(125) == "2 min 5 s"
    assert fmt_duration(3600) == "1 h"
    assert fmt_duration(3 * 3600 + 25 * 60 + 9) == "3 h 25 min"
    assert fmt_duration(3 * 86400 + 7200) == "3 d 2 h"
    assert fmt_duration(-90) == "1 min 30 s"


def test_an_unknown_duration_is_a_dash() -> None:
    assert fmt_duration(None) == "—"
    assert fmt_duration(math.nan) == "—"
    assert fmt_duration(math.inf) == "—"
