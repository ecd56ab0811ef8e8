"""A duration as people read it (``4.20 s``, ``3 min 5 s``, ``2 h``, ``1 d 3 h``; ``—`` when
unknown): in the status rules' reasons (``/health``, metrics, dashboard) and on the dashboard."""

from __future__ import annotations

import math


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
