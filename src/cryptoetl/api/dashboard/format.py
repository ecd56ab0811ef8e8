"""Formatters of the operator dashboard: numbers, prices, durations and times as people read them
(``—`` for a missing value). Registered as Jinja filters by :mod:`.render`. Durations come from
:mod:`cryptoetl.api.durations`, which the status rules share for their reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptoetl.api.durations import fmt_duration as fmt_duration  # the filter set is here


def fmt_int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def fmt_price(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    magnitude = abs(value)
    if magnitude >= 1:
        return f"{value:,.2f}"
    if magnitude >= 0.01:
        return f"{value:.4f}"
    return f"{value:.6g}"


def fmt_pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.2f}%" if abs(value) >= 1 else f"{value:.3f}%"


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_relative(value: datetime | None, now: datetime) -> str:
    """``5 min ago`` / ``in 5 min``, to the coarsest sensible unit."""
    if value is None:
        return "—"
    delta = (value - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    span = fmt_duration(abs(delta)) if abs(delta) >= 60 else f"{int(abs(delta))} s"
    return f"in {span}" if delta > 0 else f"{span} ago"


def fmt_iso(value: datetime | None) -> str:
    """The exact UTC instant, ISO 8601 (machine-readable attributes); empty for None."""
    return "" if value is None else value.astimezone(UTC).isoformat()


def safe_href(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL (upstream data is hostile), else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()
