"""Formatters of the operator dashboard: numbers, prices, durations and times as people read them
(``—`` for a missing value). Registered as Jinja filters by :mod:`.render`; the status rules
use :func:`fmt_duration` in their reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from urllib.parse import urlsplit


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


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = abs(seconds)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return _two_units(int(seconds // 60), "min", int(seconds % 60), "s")
    if seconds < 86400:
        return _two_units(int(seconds // 3600), "h", int(seconds % 3600 // 60), "min")
    return _two_units(int(seconds // 86400), "d", int(seconds % 86400 // 3600), "h")


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit} {small} {small_unit}" if small else f"{big} {big_unit}"


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
