"""The dashboard's Jinja environment: templates in ``templates/``, autoescaping on for every one.

Every value that reaches a page is escaped by the engine (text and attributes alike); nothing is
marked safe by hand. URLs from upstream data are linked only when they are ``http(s)``
(``safe_href``). Pages need no JavaScript: they refresh with ``<meta http-equiv="refresh">``,
charts are inline SVG with native ``<title>`` tooltips, styles come from one static file.

Litestar renders the routes' templates through this same environment
(:func:`template_config`); :func:`render` renders one outside a request (tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from cryptoetl.api.dashboard import charts
from cryptoetl.api.dashboard.format import (
    fmt_duration,
    fmt_int,
    fmt_iso,
    fmt_pct,
    fmt_price,
    fmt_relative,
    fmt_time,
    safe_href,
)
from cryptoetl.api.dashboard.views import series_label
from cryptoetl.api.prices import MAX_BUCKETS
from cryptoetl.api.status import HEALTH_STATES

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"
STYLESHEET = f"{STATIC_PATH}/dashboard.css"
NAV = (("/", "Dashboard"), ("/ui/assets", "Assets"), ("/docs", "API docs"))


def _unknown_as_dash(value: Any) -> Any:
    """What is not known (None) shows as "—", the pages' one sign for it, never as "None"."""
    return "—" if value is None else value


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cryptoetl.api.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_unknown_as_dash,
    )
    env.filters.update(
        fmt_int=fmt_int,
        fmt_price=fmt_price,
        fmt_pct=fmt_pct,
        fmt_time=fmt_time,
        fmt_iso=fmt_iso,
        fmt_duration=fmt_duration,
        fmt_relative=fmt_relative,
        safe_href=safe_href,
        series_label=series_label,
        run_tooltip=charts.run_tooltip,
        py_repr=repr,  # raw values in data-* attributes, read back exactly
        f0=lambda value: f"{value:.0f}",
        f1=lambda value: f"{value:.1f}",
    )
    env.globals.update(
        statuses=HEALTH_STATES,
        nav=NAV,
        stylesheet=STYLESHEET,
        run_colours=charts.RUN_COLOURS,
        anomaly_colour=charts.ANOMALY_COLOUR,
        source_colour=charts.source_colour,
        timeline=charts.timeline,
        price_chart=charts.price_chart,
        by_quote=charts.by_quote,
        max_chart_points=MAX_BUCKETS,
    )
    return env


ENVIRONMENT = _environment()


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(ENVIRONMENT))


def render(template: str, **context: Any) -> str:
    """A page or fragment as text, as the routes would render it."""
    return ENVIRONMENT.get_template(template).render(**context)


def render_macro(template: str, macro: str, *args: Any) -> str:
    """One macro of a template (e.g. a chart) as text."""
    module = ENVIRONMENT.get_template(template).module
    return str(getattr(module, macro)(*args))
