"""The time-window curve agrees with interpolating every series on its own."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from cryptoetl.api.data.window import Bounds, WindowCurve


def one_by_one(bounds: list[Bounds], since: float | None, until: float | None) -> float:
    """Each series' rows in [since, until), spread evenly over [first, last]."""
    total = 0.0
    for first, last, rows in bounds:
        if first is None or last is None:
            continue
        low = max(first, since if since is not None else first)
        high = min(last, until if until is not None else last)
        if last == first:
            total += (
                rows
                if (since is None or since <= first) and (until is None or first < until)
                else 0
            )
        elif high > low:
            total += rows * (high - low) / (last - first)
    return total


def at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


@pytest.mark.parametrize("seed", range(20))
def test_the_curve_sums_the_series(seed: int) -> None:
    rng = random.Random(seed)
    origin = 1.7e9
    bounds: list[Bounds] = []
    for _ in range(rng.randint(1, 60)):
        first = origin + rng.uniform(0, 1e7)
        last = first if rng.random() < 0.2 else first + rng.uniform(1, 3e7)
        bounds.append((first, last, rng.randint(1, 100_000)))
    bounds.append((None, None, 0))  # a series without rows
    curve = WindowCurve(bounds)
    for _ in range(50):
        since = None if rng.random() < 0.2 else origin + rng.uniform(-1e6, 4e7)
        until = None if rng.random() < 0.2 else origin + rng.uniform(-1e6, 4e7)
        expected = (
            one_by_one(bounds, since, until)
            if since is None or until is None or (until > since)
            else 0
        )
        assert curve.rows_between(at(since), at(until)) == pytest.approx(expected, abs=1)


def test_edges() -> None:
    curve = WindowCurve([(100.0, 200.0, 100), (150.0, 150.0, 7)])
    assert curve.total == 107
    assert curve.rows_between(None, None) == 107
    assert curve.rows_between(at(0), at(100)) == 0
    assert curve.rows_between(at(150), at(151)) == 8  # the point is in [150, 151)
    assert curve.rows_between(at(100), at(150)) == 50  # ... and not before 150
    assert curve.rows_between(at(200), None) == 0
    assert curve.rows_between(at(300), at(400)) == 0
    assert WindowCurve([]).rows_between(at(0), at(10)) == 0
