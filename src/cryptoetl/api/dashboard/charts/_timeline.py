"""The run timeline: a bar per run for duration and records, coloured by status, a marker over
each flagged run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cryptoetl.api.dashboard.charts._palette import (
    RUN_COLOURS,
    TIMELINE_SLOTS,
    UNKNOWN_RUN_COLOUR,
)
from cryptoetl.api.dashboard.format import fmt_duration, fmt_int, fmt_time
from cryptoetl.api.dashboard.views import TimelineRun


@dataclass(frozen=True, slots=True)
class Panel:
    name: str  # duration | records
    top: float
    bottom: float
    label: str  # the panel's maximum, e.g. "max 4.00 s"


@dataclass(frozen=True, slots=True)
class Bar:
    panel: str
    item: TimelineRun
    value: float
    x: float
    y: float
    width: float
    height: float
    colour: str
    opacity: str


@dataclass(frozen=True, slots=True)
class Marker:
    item: TimelineRun
    rules: str
    path: str


@dataclass(frozen=True, slots=True)
class Timeline:
    source: str
    runs: int
    width: float
    height: float
    left: float
    right: float
    panels: tuple[Panel, ...]
    bars: tuple[Bar, ...]
    markers: tuple[Marker, ...]
    first_label: str  # start of the oldest run shown ("" when none)
    last_label: str

    @property
    def aria(self) -> str:
        return f"{self.source}: duration and records of the last {self.runs} runs"


def run_tooltip(item: TimelineRun) -> str:
    run = item.run
    lines = [
        f"{run.status} · started {fmt_time(run.started_at)}",
        f"duration {fmt_duration(run.duration_s)} · processed {run.processed:,} "
        f"(+{run.inserted:,} new, {run.updated:,} updated, {run.rejected:,} rejected, "
        f"{run.drift_events:,} drift)",
    ]
    if run.error:
        lines.append(f"error: {run.error}")
    lines.extend(f"⚠ {a.rule}: {a.message}" for a in item.anomalies)
    return "\n".join(lines)


def bar_height(value: float, vmax: float, height: float) -> float:
    """Bar height for ``value`` on a 0..vmax scale; a non-zero value stays visible."""
    if vmax <= 0 or value <= 0 or not math.isfinite(value):
        return 0.0
    return max(1.5, min(height, value / vmax * height))


def timeline(source: str, runs: Sequence[TimelineRun], slots: int = TIMELINE_SLOTS) -> Timeline:
    """A source's newest ``slots`` runs (given oldest first), right-aligned: newest on the right."""
    runs = list(runs)[-slots:]
    width, left, right, height = 620.0, 78.0, 544.0, 156.0
    slot_w = (right - left) / slots
    bar_w = max(2.0, slot_w * 0.68)
    values = {
        "duration": [r.run.duration_s or 0.0 for r in runs],
        "records": [float(r.run.processed) for r in runs],
    }
    maxima = {name: max(v, default=0.0) for name, v in values.items()}
    panels = (
        Panel("duration", 16.0, 66.0, f"max {fmt_duration(maxima['duration'])}"),
        Panel("records", 86.0, 136.0, f"max {fmt_int(int(maxima['records']))}"),
    )
    bars, markers = [], []
    first_slot = slots - len(runs)
    for i, item in enumerate(runs):
        x = left + (first_slot + i) * slot_w + (slot_w - bar_w) / 2
        colour = RUN_COLOURS.get(item.run.status, UNKNOWN_RUN_COLOUR)
        for panel in panels:
            value = values[panel.name][i]
            h = bar_height(value, maxima[panel.name], panel.bottom - panel.top)
            shown = max(h, 1.0)  # a zero still shows as a tick on the baseline
            opacity = "1" if h > 0 else "0.55"
            top = panel.bottom - shown
            bars.append(Bar(panel.name, item, value, x, top, bar_w, shown, colour, opacity))
        if item.anomalies:
            cx = x + bar_w / 2
            path = f"M{cx - 5:.1f} 3 L{cx + 5:.1f} 3 L{cx:.1f} 12 Z"
            markers.append(Marker(item, ",".join(a.rule for a in item.anomalies), path))
    return Timeline(
        source=source,
        runs=len(runs),
        width=width,
        height=height,
        left=left,
        right=right,
        panels=panels,
        bars=tuple(bars),
        markers=tuple(markers),
        first_label=fmt_time(runs[0].run.started_at) if runs else "",
        last_label=fmt_time(runs[-1].run.started_at) if runs else "",
    )
