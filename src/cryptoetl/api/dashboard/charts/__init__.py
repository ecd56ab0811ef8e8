"""Geometry of the dashboard's hand-written SVG charts; ``templates/charts.html`` draws it.

Pure functions from view data to coordinates: a run timeline (bars for duration and records,
coloured by status, a marker over each flagged run) and a price chart (one polyline per series
on shared time and price scales). The markup, with the ``data-*`` hooks tests read, is in the
template, so every value is escaped by Jinja's autoescape.
"""

from cryptoetl.api.dashboard.charts._palette import (
    ANOMALY_COLOUR,
    RUN_COLOURS,
    TIMELINE_SLOTS,
    source_colour,
)
from cryptoetl.api.dashboard.charts._prices import by_quote, nice_ticks, price_chart, scale
from cryptoetl.api.dashboard.charts._timeline import run_tooltip, timeline

__all__ = [
    "ANOMALY_COLOUR",
    "RUN_COLOURS",
    "TIMELINE_SLOTS",
    "by_quote",
    "nice_ticks",
    "price_chart",
    "run_tooltip",
    "scale",
    "source_colour",
    "timeline",
]
