"""Bucket widths and parameters of GET /assets/{id}/prices (pure functions)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cryptoetl.api.errors import InvalidParameters
from cryptoetl.api.prices import MAX_BUCKETS, WIDTHS, choose_width, parse_price_query


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (timedelta(minutes=30), "1m"),
        (timedelta(hours=9), "5m"),
        (timedelta(days=20), "1h"),
        (timedelta(days=21), "4h"),
        (timedelta(days=500), "1d"),
        (timedelta(days=365 * 20), "30d"),
    ],
)
def test_the_finest_width_that_fits_the_range(span: timedelta, width: str) -> None:
    assert choose_width(span) == width
    assert span <= WIDTHS[width] * MAX_BUCKETS or width == "30d"


def test_parameters_are_validated_and_named() -> None:
    query = parse_price_query({"venue": ["Binance"], "quote": ["usdt"], "interval": ["1h"]})
    assert (query.venue, query.quote, query.width) == ("binance", "USDT", "1h")
    assert parse_price_query({"quote": ["Unknown"]}).quote == "unknown"  # series without a quote
    with pytest.raises(InvalidParameters) as raised:
        parse_price_query({"interval": ["2h"], "source": ["rss"], "colour": ["red"]})
    assert {d.parameter for d in raised.value.detail} == {"interval", "source", "colour"}
