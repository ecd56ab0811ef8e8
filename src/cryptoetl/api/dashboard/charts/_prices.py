"""The price chart: one polyline per series on shared time and price scales, with readable
ticks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptoetl.api.dashboard.charts._palette import DOTS_UP_TO, source_colour
from cryptoetl.api.dashboard.format import fmt_iso, fmt_price, fmt_time
from cryptoetl.api.dashboard.views import Series


def scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    """Map ``value`` from [lo, hi] onto [out_lo, out_hi] (the middle when lo == hi)."""
    if hi == lo:
        return (out_lo + out_hi) / 2
    return out_lo + (value - lo) / (hi - lo) * (out_hi - out_lo)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    if not math.isfinite(hi - lo):
        return [lo, hi]
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    n = round((last - first) / step)
    return [round(first + i * step, 12) for i in range(n + 1)]


def _tick_label(value: float, step: float) -> str:
    decimals = 0
    while decimals < 10 and abs(round(step, decimals) - step) > abs(step) * 1e-9:
        decimals += 1
    return f"{value:,.{decimals}f}"


def _time_label(value: datetime, span: timedelta) -> str:
    value = value.astimezone(UTC)
    if span >= timedelta(days=2):
        return value.strftime("%Y-%m-%d")
    if span >= timedelta(hours=2):
        return value.strftime("%m-%d %H:%M")
    return value.strftime("%H:%M:%S")


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # y for price ticks, x for time ticks
    label: str
    anchor: str = "end"


@dataclass(frozen=True, slots=True)
class Line:
    series: Series
    colour: str
    points: tuple[tuple[float, float], ...]
    latest_radius: float

    @property
    def coordinates(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)

    @property
    def dots(self) -> tuple[tuple[float, float], ...]:
        return self.points if len(self.points) <= DOTS_UP_TO else ()

    @property
    def latest_title(self) -> str:
        last_t, last_v = self.series.points[-1]
        s = self.series
        return f"{s.source} {s.label} {fmt_price(last_v)} {s.quote or ''} at {fmt_time(last_t)}"

    @property
    def last_time(self) -> str:
        return fmt_iso(self.series.points[-1][0])


@dataclass(frozen=True, slots=True)
class PriceChart:
    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    y_min: float
    y_max: float
    price_ticks: tuple[Tick, ...]
    time_ticks: tuple[Tick, ...]
    quote: str
    lines: tuple[Line, ...]  # empty: no price data


def price_chart(
    series: Sequence[Series], *, width: float = 1180, height: float = 360
) -> PriceChart:
    """Prices of series of one quote currency on one time axis."""
    drawn = [s for s in series if s.points]
    left, right, top, bottom = 84.0, width - 18.0, 24.0, height - 34.0
    if not drawn:
        return PriceChart(width, 60.0, left, right, top, bottom, 0.0, 0.0, (), (), "", ())
    times = [t for s in drawn for t, _ in s.points]
    values = [v for s in drawn for _, v in s.points]
    t_lo, t_hi = min(times), max(times)
    if t_lo == t_hi:
        t_lo, t_hi = t_lo - timedelta(hours=12), t_hi + timedelta(hours=12)
    ticks = nice_ticks(min(values), max(values))
    v_lo, v_hi = ticks[0], ticks[-1]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    e_lo, e_hi = t_lo.timestamp(), t_hi.timestamp()

    def x_of(t: datetime) -> float:
        return scale(t.timestamp(), e_lo, e_hi, left, right)

    def y_of(v: float) -> float:
        return scale(v, v_lo, v_hi, bottom, top)

    span = t_hi - t_lo
    time_ticks = tuple(
        Tick(
            x_of(t_lo + span * (i / 4)),
            _time_label(t_lo + span * (i / 4), span),
            "start" if i == 0 else "end" if i == 4 else "middle",
        )
        for i in range(5)
    )
    lines = tuple(
        Line(
            s,
            source_colour(s.source),
            tuple((x_of(t), y_of(v)) for t, v in s.points),
            # Latest points are drawn larger first: ones that coincide stay visible as rings.
            3.8 + 1.6 * (len(drawn) - 1 - k),
        )
        for k, s in enumerate(drawn)
    )
    return PriceChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        y_min=v_lo,
        y_max=v_hi,
        price_ticks=tuple(Tick(y_of(t), _tick_label(t, step)) for t in ticks),
        time_ticks=time_ticks,
        quote=drawn[0].quote or "unknown quote",
        lines=lines,
    )


def by_quote(series: Sequence[Series]) -> list[tuple[str, list[Series]]]:
    """Series grouped by quote currency, USD first: prices in different units never share an
    axis (``""`` stands for an unknown quote)."""
    groups: dict[str | None, list[Series]] = {}
    for s in series:
        groups.setdefault(s.quote, []).append(s)
    order = sorted(groups, key=lambda q: (q != "USD", q is None, q or ""))
    return [(q or "", groups[q]) for q in order]
