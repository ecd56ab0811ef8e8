"""HTML and SVG rendering of the operator dashboard: pure functions, no I/O (see ``ui.py``).

Safety: every value that reaches a page goes through :func:`esc` (text and attribute values
alike); URLs that come from upstream data are linked only when they are ``http(s)``. The pages
need no JavaScript at all: they refresh with ``<meta http-equiv="refresh">``, the charts are
inline SVG, and bars and points carry ``<title>`` tooltips (native, no script).

Machine-readable hooks for tests and scrapers: rows and charts carry ``id``/``data-*``
attributes with the raw values (``data-value``, ``data-n``, ``data-last`` ...), so a check can
compare them with the JSON API without parsing formatted text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode, urlsplit

from cryptoetl.api.prices import MAX_BUCKETS
from cryptoetl.api.schemas import (
    Anomaly,
    AssetListItem,
    AssetMapping,
    AssetRef,
    NewsItem,
    RunItem,
    SeriesRef,
    SourcePrice,
)

STATUSES = ("healthy", "degraded", "failing", "disabled")
# Bar colours by run status (the same hues as the status pills).
RUN_COLOURS = {
    "success": "#2da44e",
    "failed": "#cf222e",
    "interrupted": "#bf8700",
    "running": "#0969da",
}
ANOMALY_COLOUR = "#bc4c00"
# Price lines by source: distinct from the status colours.
SOURCE_COLOURS = {"csv": "#0969da", "coingecko": "#bf3989", "coinpaprika": "#8250df"}
OTHER_COLOUR = "#57606a"
TIMELINE_SLOTS = 20
MAX_CHART_POINTS = MAX_BUCKETS  # buckets per series, as /assets/{id}/prices returns them

# --- formatting -------------------------------------------------------------------------------


def esc(value: object) -> str:
    """HTML-escape any value for text or a quoted attribute (``& < > " '``)."""
    return html.escape("" if value is None else str(value), quote=True)


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


def time_tag(value: datetime | None, now: datetime) -> str:
    """A ``<time>`` element: relative text, the exact UTC instant as tooltip."""
    if value is None:
        return '<span class="muted">—</span>'
    exact = fmt_time(value)
    return (
        f'<time datetime="{esc(value.astimezone(UTC).isoformat())}" title="{esc(exact)}">'
        f"{esc(fmt_relative(value, now))}</time>"
    )


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


def link(href: str, text: str, *, cls: str = "") -> str:
    attr = f' class="{esc(cls)}"' if cls else ""
    return f'<a href="{esc(href)}"{attr}>{esc(text)}</a>'


def status_pill(status: str) -> str:
    """Status by colour *and* by word."""
    word = status if status in STATUSES else "unknown"
    return f'<span class="pill s-{esc(word)}" data-status="{esc(word)}">{esc(word)}</span>'


# --- page shell -------------------------------------------------------------------------------

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--border:#d1d9e0;--panel:#f6f8fa;--link:#0969da;
--ok:#1a7f37;--ok-bg:#dafbe1;--ok-bd:#aceebb;--warn:#7d4e00;--warn-bg:#fff8c5;--warn-bd:#eac54f;
--bad:#cf222e;--bad-bg:#ffebe9;--bad-bd:#ffcecb;--off:#59636e;--off-bg:#eff2f5;--off-bd:#d1d9e0}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans","DejaVu Sans",sans-serif}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:6px 22px;padding:10px 24px;
background:#24292f;color:#f0f3f6}
.top a{color:#f0f3f6}.top .brand{font-weight:700;font-size:16px;margin-right:8px}
.top .json{margin-left:auto;font-size:12px;color:#9198a1}.top .json a{color:#9ecbff}
main{max-width:1280px;margin:0 auto;padding:14px 24px 32px}
h1{font-size:22px;margin:10px 0 2px;display:flex;align-items:center;gap:12px}
h2{font-size:16px;margin:26px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--border)}
h3{font-size:14px;margin:0 0 4px}
.muted{color:var(--muted)}.small{font-size:12px}.mono{font-family:ui-monospace,monospace}
.sub{margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{padding:7px 10px;border-bottom:1px solid var(--border);text-align:left;vertical-align:top}
th{background:var(--panel);font-size:11px;font-weight:600;text-transform:uppercase;
letter-spacing:.03em;color:var(--muted);white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:hover{background:#f6f8fa80}
.pill{display:inline-flex;align-items:center;gap:6px;padding:1px 10px 1px 8px;border:1px solid;
border-radius:999px;font-size:12px;font-weight:600;white-space:nowrap}
.pill::before{content:"";width:8px;height:8px;border-radius:50%;background:currentColor}
.s-healthy{color:var(--ok);background:var(--ok-bg);border-color:var(--ok-bd)}
.s-degraded{color:var(--warn);background:var(--warn-bg);border-color:var(--warn-bd)}
.s-failing{color:var(--bad);background:var(--bad-bg);border-color:var(--bad-bd)}
.s-disabled,.s-unknown{color:var(--off);background:var(--off-bg);border-color:var(--off-bd)}
.reasons{margin:4px 0 0;padding:0;list-style:none;font-size:12px;color:var(--muted)}
.reasons li{white-space:nowrap}time{white-space:nowrap}
.err{color:var(--bad);font-size:12px;overflow-wrap:anywhere;max-width:280px}
.flag{color:#bc4c00;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px}
.card{border:1px solid var(--border);border-radius:8px;padding:10px 12px;background:#fff}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:var(--muted);margin:4px 0}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.anomalies{margin:6px 0 0;padding-left:18px;font-size:12px}
.anomalies li{margin:2px 0}
.anomalies code{color:#bc4c00;font-weight:600}
svg{display:block;max-width:100%;height:auto}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;
fill:#59636e}
.chart{border:1px solid var(--border);border-radius:8px;padding:8px;background:#fff}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin:10px 0}
.stat{border:1px solid var(--border);border-radius:8px;padding:8px 14px;min-width:150px}
.stat b{display:block;font-size:20px;font-variant-numeric:tabular-nums}
.stat span{font-size:12px;color:var(--muted)}
form.search{display:flex;gap:8px;margin:8px 0}
form.search input{padding:5px 8px;border:1px solid var(--border);border-radius:6px;min-width:260px}
form.search button{padding:5px 12px;border:1px solid var(--border);border-radius:6px;
background:var(--panel)}
.pager{display:flex;gap:16px;margin:10px 0;align-items:center}
.range a,.range b{margin-right:10px}
footer{max-width:1280px;margin:0 auto;padding:10px 24px 30px;color:var(--muted);font-size:12px}
"""

NAV = (("/", "Dashboard"), ("/ui/assets", "Assets"), ("/docs", "API docs"))


def page(
    title: str,
    body: str,
    *,
    json_links: Sequence[tuple[str, str]] = (),
    refresh_s: int | None = 30,
    generated_at: datetime | None = None,
) -> str:
    """A whole HTML document. ``body`` is trusted markup (built by this module)."""
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    nav = " ".join(link(href, text) for href, text in NAV)
    json_nav = " · ".join(link(href, label) for label, href in json_links)
    footer = []
    if generated_at is not None:
        footer.append(f"Generated {esc(fmt_time(generated_at))}")
    if refresh_s:
        footer.append(f"refreshes every {int(refresh_s)} s (no JavaScript needed)")
    footer.append("times in UTC; hover a time, bar or point for details")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{refresh}<title>{esc(title)} · cryptoetl</title><style>{_CSS}</style></head>"
        f'<body><nav class="top"><span class="brand">cryptoetl</span>{nav}'
        + (f'<span class="json">JSON: {json_nav}</span>' if json_nav else "")
        + f"</nav><main>{body}</main>"
        f"<footer>{' · '.join(footer)}</footer></body></html>\n"
    )


def error_page(status: int, message: str, *, refresh_s: int | None = None) -> str:
    body = (
        f'<h1>{esc(status)} <span class="muted">{esc(message)}</span></h1>'
        f"<p>{link('/', 'Back to the dashboard')} · {link('/ui/assets', 'All assets')}</p>"
    )
    return page(f"Error {status}", body, refresh_s=refresh_s)


# --- dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineRun:
    """One run on a source's timeline, with the anomaly rules that flagged it."""

    run: RunItem
    anomalies: tuple[Anomaly, ...] = ()
    judged_against: str | None = None  # the run it was compared with (run_a), if any


@dataclass(frozen=True, slots=True)
class SourceView:
    source: str
    status: str  # healthy | degraded | failing | disabled
    reasons: tuple[str, ...]
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    records: int
    last_run: RunItem | None
    next_run_at: datetime | None
    interval_s: int
    drift_since: int
    rejects_since: int
    runs_since: int  # runs counted for drift_since / rejects_since
    latest_anomalies: tuple[Anomaly, ...] = ()


@dataclass(frozen=True, slots=True)
class TopAsset:
    id: int
    symbol: str
    name: str
    records: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    now: datetime
    overall: str
    sources: tuple[SourceView, ...]
    timelines: dict[str, tuple[TimelineRun, ...]]  # oldest first
    records_total: int
    top_assets: tuple[TopAsset, ...] = ()
    refresh_s: int = 30
    stale_after_s: int = 3600


def _next_run_cell(view: SourceView, now: datetime) -> str:
    run = view.last_run
    if view.status == "disabled":
        return '<span class="muted">disabled</span>'
    if run is not None and run.status == "running":
        started = time_tag(run.started_at, now)
        return f"running now<br><span class='muted small'>started {started}</span>"
    if view.next_run_at is None:
        return '<span class="muted">at the next worker start</span>'
    late = (now - view.next_run_at).total_seconds()
    note = (
        f'<br><span class="flag">overdue by {esc(fmt_duration(late))}</span>'
        if late > 0
        else f'<br><span class="muted small">every {esc(fmt_duration(view.interval_s))}</span>'
    )
    return time_tag(view.next_run_at, now) + note


def _last_run_cell(source: str, run: RunItem | None, now: datetime) -> str:
    if run is None:
        return f'<span class="muted" id="last-run-{esc(source)}">never ran</span>'
    return (
        f'<span class="v" id="last-run-{esc(source)}" data-value="{run.processed}">'
        f"{fmt_int(run.processed)}</span>"
        f'<br><span class="muted small">+{fmt_int(run.inserted)} new · '
        f"{fmt_int(run.updated)} updated · {esc(run.status)} "
        f"{time_tag(run.finished_at or run.started_at, now)}</span>"
    )


def source_row(view: SourceView, now: datetime) -> str:
    reasons = "".join(f"<li>{esc(r)}</li>" for r in view.reasons)
    flags = "".join(
        f'<li class="flag" title="{esc(a.message)}">⚠ {esc(a.rule)}</li>'
        for a in view.latest_anomalies
    )
    status = status_pill(view.status) + (
        f'<ul class="reasons">{reasons}{flags}</ul>' if reasons or flags else ""
    )
    failure = time_tag(view.last_failure_at, now)
    if view.last_error:
        failure += f'<div class="err" title="{esc(view.last_error)}">{esc(view.last_error)}</div>'
    source = esc(view.source)
    next_iso = view.next_run_at.astimezone(UTC).isoformat() if view.next_run_at else ""
    since = (
        f'<span class="v" id="drift-{source}" data-value="{view.drift_since}">'
        f"{fmt_int(view.drift_since)}</span>"
        f' / <span class="v" id="rejects-{source}" data-value="{view.rejects_since}">'
        f"{fmt_int(view.rejects_since)}</span>"
        f'<br><span class="muted small">over {fmt_int(view.runs_since)} run(s)</span>'
    )
    json = " · ".join(
        (
            link(f"/runs?source={quote(view.source)}", "runs"),
            link(f"/compare-runs?source={quote(view.source)}", "compare"),
            link(f"/data?source_type={quote(view.source)}&page_size=10", "data"),
        )
    )
    return (
        f'<tr id="source-{source}" data-source="{source}" data-status="{esc(view.status)}">'
        f'<td><b><a href="#timeline-{source}">{source}</a></b>'
        f'<div class="small">{json}</div></td>'
        f"<td>{status}</td>"
        f'<td class="last-success">{time_tag(view.last_success_at, now)}</td>'
        f'<td class="last-failure">{failure}</td>'
        f'<td class="num records"><span class="v" id="records-{source}" '
        f'data-value="{view.records}">'
        f"{fmt_int(view.records)}</span></td>"
        f'<td class="num last-run">{_last_run_cell(view.source, view.last_run, now)}</td>'
        f'<td class="next-run" id="next-run-{source}" data-value="{esc(next_iso)}">'
        f"{_next_run_cell(view, now)}</td>"
        f'<td class="num since">{since}</td></tr>'
    )


def source_table(views: Sequence[SourceView], now: datetime) -> str:
    head = (
        "<tr><th>Source</th><th>Status</th><th>Last success</th><th>Last failure</th>"
        '<th class="num">Records in table</th><th class="num">Records in last run</th>'
        '<th>Next run</th><th class="num" title="schema drift events / rejected records, '
        'in the last successful run and the runs after it">Drift / rejects<br>since success</th>'
        "</tr>"
    )
    rows = "".join(source_row(v, now) for v in views)
    if not rows:
        rows = '<tr><td colspan="8" class="muted">no sources</td></tr>'
    return f'<table class="sources" id="sources"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _bar_height(value: float, vmax: float, height: float) -> float:
    """Bar height for ``value`` on a 0..vmax scale; a non-zero value stays visible."""
    if vmax <= 0 or value <= 0 or not math.isfinite(value):
        return 0.0
    return max(1.5, min(height, value / vmax * height))


def _run_tooltip(item: TimelineRun) -> str:
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


def run_timeline_svg(source: str, runs: Sequence[TimelineRun], slots: int = TIMELINE_SLOTS) -> str:
    """Two bar panels (duration, records processed) of a source's recent runs, oldest left,
    newest right, coloured by status; a marker above each run an anomaly rule flagged."""
    runs = list(runs)[-slots:]
    width, left, right = 620.0, 78.0, 544.0
    slot_w = (right - left) / slots
    bar_w = max(2.0, slot_w * 0.68)
    panels = (("duration", 16.0, 50.0), ("records", 86.0, 50.0))
    height = 156.0
    durations = [r.run.duration_s or 0.0 for r in runs]
    processed = [float(r.run.processed) for r in runs]
    maxima = {"duration": max(durations, default=0.0), "records": max(processed, default=0.0)}
    labels = {
        "duration": f"max {fmt_duration(maxima['duration'])}",
        "records": f"max {fmt_int(int(maxima['records']))}",
    }
    aria = f"{source}: duration and records of the last {len(runs)} runs"
    parts = [
        f'<svg class="timeline" data-source="{esc(source)}" data-runs="{len(runs)}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'role="img" aria-label="{esc(aria)}">'
    ]
    for name, top, panel_h in panels:
        bottom = top + panel_h
        parts.append(
            f'<text x="0" y="{top + panel_h / 2 + 4:.1f}">{name}</text>'
            f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" '
            'stroke="#d1d9e0"/>'
            f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{right:.1f}" y2="{top:.1f}" '
            'stroke="#eef1f4" stroke-dasharray="3 3"/>'
            f'<text x="{right + 6:.1f}" y="{top + 9:.1f}">{esc(labels[name])}</text>'
        )
    first_slot = slots - len(runs)
    for i, item in enumerate(runs):
        run = item.run
        x = left + (first_slot + i) * slot_w + (slot_w - bar_w) / 2
        colour = RUN_COLOURS.get(run.status, "#8c959f")
        tip = esc(_run_tooltip(item))
        values = {"duration": durations[i], "records": processed[i]}
        for name, top, panel_h in panels:
            bottom = top + panel_h
            h = _bar_height(values[name], maxima[name], panel_h)
            shown = max(h, 1.0)  # a zero still shows as a tick on the baseline
            opacity = "1" if h > 0 else "0.55"
            parts.append(
                f'<rect class="bar {esc(name)} run-{esc(run.status)}" data-run-id="{esc(run.id)}" '
                f'data-status="{esc(run.status)}" data-value="{values[name]!r}" '
                f'x="{x:.1f}" y="{bottom - shown:.1f}" width="{bar_w:.1f}" height="{shown:.1f}" '
                f'fill="{colour}" fill-opacity="{opacity}" rx="1.5"><title>{tip}</title></rect>'
            )
        if item.anomalies:
            cx = x + bar_w / 2
            rules = ",".join(a.rule for a in item.anomalies)
            parts.append(
                f'<path class="anomaly-marker" data-run-id="{esc(run.id)}" '
                f'data-rules="{esc(rules)}" d="M{cx - 5:.1f} 3 L{cx + 5:.1f} 3 L{cx:.1f} 12 Z" '
                f'fill="{ANOMALY_COLOUR}"><title>{tip}</title></path>'
            )
    if runs:
        parts.append(
            f'<text x="{left:.1f}" y="{height - 4:.1f}">'
            f"{esc(fmt_time(runs[0].run.started_at))}</text>"
            f'<text x="{right:.1f}" y="{height - 4:.1f}" text-anchor="end">'
            f"{esc(fmt_time(runs[-1].run.started_at))}</text>"
        )
    else:
        parts.append(
            f'<text x="{(left + right) / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">'
            "no runs yet</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _anomaly_list(source: str, runs: Sequence[TimelineRun]) -> str:
    items = []
    for item in reversed(runs):  # newest first
        if not item.anomalies:
            continue
        run = item.run
        href = (
            f"/compare-runs?{urlencode({'run_a': item.judged_against, 'run_b': run.id})}"
            if item.judged_against
            else f"/runs?{urlencode({'source': source})}"
        )
        rules = "; ".join(f"<code>{esc(a.rule)}</code> {esc(a.message)}" for a in item.anomalies)
        items.append(
            f'<li data-run-id="{esc(run.id)}">{esc(fmt_time(run.started_at))} '
            f"({esc(run.status)}): {rules} · {link(href, 'JSON')}</li>"
        )
    if not items:
        return '<p class="muted small">No anomalies in these runs.</p>'
    return f'<ul class="anomalies">{"".join(items)}</ul>'


def timeline_card(source: str, runs: Sequence[TimelineRun]) -> str:
    src = esc(source)
    q = quote(source)
    return (
        f'<section class="card" id="timeline-{src}" data-source="{src}">'
        f'<h3>{src} <span class="muted small">last {len(runs)} run(s) · JSON: '
        f"{link(f'/runs?source={q}', '/runs')} · "
        f"{link(f'/compare-runs?source={q}', '/compare-runs')}</span></h3>"
        f"{run_timeline_svg(source, runs)}{_anomaly_list(source, runs)}</section>"
    )


def _run_legend() -> str:
    swatches = "".join(
        f'<span><i class="sw" style="background:{colour}"></i>{esc(status)}</span>'
        for status, colour in RUN_COLOURS.items()
    )
    return (
        f'<div class="legend">{swatches}<span><i class="sw" style="background:'
        f'{ANOMALY_COLOUR}"></i>▼ anomaly (rule named below the chart)</span></div>'
    )


def _top_assets(assets: Sequence[TopAsset]) -> str:
    if not assets:
        return '<p class="muted">No assets yet.</p>'
    rows = "".join(
        f'<tr data-asset-id="{a.id}"><td>{link(f"/ui/assets/{a.id}", a.name)}</td>'
        f'<td class="mono">{esc(a.symbol)}</td><td class="num">{fmt_int(a.records)}</td>'
        f'<td class="small">{link(f"/assets/{a.id}", "JSON")}</td></tr>'
        for a in assets
    )
    return (
        '<table class="top-assets"><thead><tr><th>Asset</th><th>Symbol</th>'
        f'<th class="num">Market records</th><th>API</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def dashboard_page(view: Dashboard) -> str:
    now = view.now
    counts = {s: sum(1 for v in view.sources if v.status == s) for s in STATUSES}
    enabled = len(view.sources) - counts["disabled"]
    stats = (
        '<div class="stats">'
        f'<div class="stat"><b id="records-total" data-value="{view.records_total}">'
        f"{fmt_int(view.records_total)}</b><span>records in the table</span></div>"
        f'<div class="stat"><b>{counts["healthy"]} / {enabled}</b>'
        "<span>sources healthy</span></div>"
        f'<div class="stat"><b>{counts["degraded"]}</b><span>degraded</span></div>'
        f'<div class="stat"><b>{counts["failing"]}</b><span>failing</span></div></div>'
    )
    timelines = "".join(
        timeline_card(v.source, view.timelines.get(v.source, ())) for v in view.sources
    )
    body = (
        f'<h1>Pipeline at a glance <span id="overall">{status_pill(view.overall)}</span></h1>'
        f'<p class="muted sub">Status: <b>failing</b> = the last run failed; <b>degraded</b> = '
        f"never succeeded, interrupted, no success for more than "
        f"{esc(fmt_duration(view.stale_after_s))} (STALE_AFTER_S), or the next run is overdue "
        "by more than one interval; anomalies are flagged (⚠) without changing the status.</p>"
        f"{stats}<h2>Sources</h2>{source_table(view.sources, now)}"
        f"<h2>Recent runs</h2>{_run_legend()}<div class='grid'>{timelines}</div>"
        f"<h2>Assets with the most market records</h2>{_top_assets(view.top_assets)}"
        f"<p>{link('/ui/assets', 'All assets →')}</p>"
    )
    return page(
        "Dashboard",
        body,
        json_links=(
            ("/health", "/health"),
            ("/stats", "/stats"),
            ("/runs", "/runs"),
            ("/compare-runs", "/compare-runs?source=csv"),
            ("/assets", "/assets"),
        ),
        refresh_s=view.refresh_s,
        generated_at=now,
    )


# --- charts -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """One market series' prices over time, oldest first, in its ``quote`` currency."""

    source: str
    points: tuple[tuple[datetime, float], ...]
    origin: str = ""
    label: str = ""  # venue base/quote interval
    quote: str | None = "USD"


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


def price_chart_svg(series: Sequence[Series], *, width: float = 1180, height: float = 360) -> str:
    """Prices of series of one quote currency on one time axis: a polyline per series, a dot
    per point when points are few, and a larger dot on each series' latest point."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return (
            f'<svg class="price-chart empty" viewBox="0 0 {width:.0f} 60" width="100%" '
            'height="60" role="img" aria-label="no price data">'
            f'<text x="{width / 2:.0f}" y="34" text-anchor="middle">no price data yet</text></svg>'
        )
    left, right, top, bottom = 84.0, width - 18.0, 24.0, height - 34.0
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

    parts = [
        f'<svg class="price-chart" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" '
        f'height="{height:.0f}" role="img" aria-label="price over time per source" '
        f'data-y-min="{v_lo!r}" data-y-max="{v_hi!r}">'
    ]
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#eef1f4"/>'
            f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" text-anchor="end">'
            f"{esc(_tick_label(tick, step))}</text>"
        )
    span = t_hi - t_lo
    for i in range(5):
        t = t_lo + span * (i / 4)
        x = x_of(t)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}" '
            'stroke="#8c959f"/>'
            f'<text x="{x:.1f}" y="{bottom + 18:.1f}" text-anchor="{anchor}">'
            f"{esc(_time_label(t, span))}</text>"
        )
    parts.append(
        f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" '
        'stroke="#8c959f"/>'
        f'<text x="{left - 8:.1f}" y="{top - 12:.1f}" text-anchor="end">'
        f"{esc(drawn[0].quote or 'unknown quote')}</text>"
    )
    latest: list[str] = []
    for s in drawn:
        colour = SOURCE_COLOURS.get(s.source, OTHER_COLOUR)
        coords = [(x_of(t), y_of(v)) for t, v in s.points]
        src = esc(s.source)
        first_v = s.points[0][1]
        last_t, last_v = s.points[-1]
        parts.append(
            f'<polyline class="series" data-source="{src}" data-series="{esc(s.label)}" '
            f'data-n="{len(s.points)}" '
            f'data-first="{first_v!r}" data-last="{last_v!r}" '
            f'data-last-time="{esc(last_t.astimezone(UTC).isoformat())}" fill="none" '
            f'stroke="{colour}" stroke-width="1.8" stroke-linejoin="round" '
            f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}">'
            f"<title>{src} {esc(s.label)}: {len(s.points)} point(s)</title></polyline>"
        )
        if len(coords) <= 60:
            parts.extend(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{colour}"/>' for x, y in coords
            )
        x, y = coords[-1]
        # Drawn last, larger first: latest points that coincide stay visible as rings.
        radius = 3.8 + 1.6 * (len(drawn) - 1 - len(latest))
        latest.append(
            f'<circle class="latest" data-source="{src}" cx="{x:.1f}" cy="{y:.1f}" '
            f'r="{radius:.1f}" fill="{colour}" stroke="#fff" stroke-width="1.5"><title>{src} '
            f"{esc(s.label)} {esc(fmt_price(last_v))} {esc(s.quote or '')} at "
            f"{esc(fmt_time(last_t))}</title></circle>"
        )
    parts.extend(latest)
    parts.append("</svg>")
    return "".join(parts)


def chart_legend(series: Sequence[Series]) -> str:
    items = []
    for s in series:
        colour = SOURCE_COLOURS.get(s.source, OTHER_COLOUR)
        origin = f" — {esc(s.origin)}" if s.origin else ""
        items.append(
            f'<span data-source="{esc(s.source)}" data-series="{esc(s.label)}">'
            f'<i class="sw" style="background:{colour}"></i>'
            f"<b>{esc(s.source)}</b> {esc(s.label)}: {fmt_int(len(s.points))} point(s){origin}"
            "</span>"
        )
    return f'<div class="legend">{"".join(items)}</div>'


def _charts(series: Sequence[Series]) -> str:
    """One chart per quote currency (USD first): prices in different units never share an axis."""
    by_quote: dict[str | None, list[Series]] = {}
    for s in series:
        by_quote.setdefault(s.quote, []).append(s)
    order = sorted(by_quote, key=lambda q: (q != "USD", q is None, q or ""))
    if not order:
        return f'<div class="chart">{price_chart_svg([])}</div>'
    return "".join(
        f'<div class="chart" data-quote="{esc(q or "")}">'
        f"{price_chart_svg(by_quote[q])}{chart_legend(by_quote[q])}</div>"
        for q in order
    )


# --- asset pages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssetPage:
    now: datetime
    asset: AssetRef
    mappings: Sequence[AssetMapping]
    prices: Sequence[SourcePrice]
    spread_pct: float | None
    news: Sequence[NewsItem]
    series: Sequence[Series]
    record_counts: dict[str, int] = field(default_factory=dict)
    days: int | None = None
    range_options: Sequence[int | None] = (None, 365, 90, 30, 7)
    refresh_s: int = 30


def _mapping_table(view: AssetPage) -> str:
    rows = []
    for m in view.mappings:
        n = view.record_counts.get(m.source_type, 0)
        data_href = f"/data?{urlencode({'asset': view.asset.id, 'source_type': m.source_type})}"
        rows.append(
            f'<tr class="mapping" data-source="{esc(m.source_type)}" '
            f'data-source-id="{esc(m.source_id)}" data-records="{n}">'
            f"<td><b>{esc(m.source_type)}</b></td>"
            f'<td class="mono">{esc(m.source_id)}</td><td class="mono">{esc(m.symbol)}</td>'
            f"<td>{esc(m.name)}</td><td>{esc(m.method)}</td>"
            f'<td class="num" data-value="{m.confidence!r}">{m.confidence:.3f}</td>'
            f'<td class="num"><span data-value="{n}">{fmt_int(n)}</span> '
            f'<span class="small">{link(data_href, "JSON")}</span></td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="7" class="muted">no mappings</td></tr>'
    return (
        '<table class="mappings"><thead><tr><th>Source</th><th>Source id</th><th>Symbol</th>'
        '<th>Name</th><th>Method</th><th class="num">Confidence</th>'
        f'<th class="num">Records</th></tr></thead><tbody>{body}</tbody></table>'
    )


def series_label(series: SeriesRef) -> str:
    """``venue base/quote interval``, ``?`` where the source did not say."""
    return f"{series.venue} {series.base}/{series.quote or '?'} {series.interval or '?'}"


def _price_table(view: AssetPage) -> str:
    rows = "".join(
        f'<tr class="price-row" data-source="{esc(p.source_type)}" '
        f'data-series-id="{p.series.id}"><td><b>{esc(p.source_type)}</b></td>'
        f'<td class="mono">{esc(series_label(p.series))}</td>'
        f'<td class="num price" id="price-{p.series.id}" data-value="{p.price!r}">'
        f"{esc(fmt_price(p.price))} {esc(p.quote or '?')}</td>"
        f'<td class="num">{esc(fmt_price(p.market_cap_usd))}</td>'
        f'<td class="num">{esc(fmt_price(p.volume_24h_usd))}</td>'
        f'<td class="num">{esc(fmt_pct(p.change_24h_pct))}</td>'
        f'<td class="num">{fmt_int(p.rank)}</td>'
        f"<td>{time_tag(p.source_timestamp, view.now)}</td></tr>"
        for p in view.prices
    )
    rows = rows or '<tr><td colspan="8" class="muted">no market rows</td></tr>'
    return (
        '<table class="prices"><thead><tr><th>Source</th><th>Series</th>'
        '<th class="num">Price</th><th class="num">Market cap USD</th>'
        '<th class="num">Volume 24 h USD</th><th class="num">Change 24 h</th>'
        '<th class="num">Rank</th><th>As of</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _news_list(view: AssetPage) -> str:
    if not view.news:
        return '<p class="muted">No news mentions this asset yet.</p>'
    items = []
    for n in view.news:
        title = n.title or "(untitled)"
        href = safe_href(n.url)
        head = link(href, title, cls="news-title") if href else esc(title)
        by = f" · {esc(n.author)}" if n.author else ""
        items.append(
            f'<tr class="news-item" data-news-id="{n.id}"><td>{head}'
            f'<div class="muted small">{esc(n.source_type)}'
            f"{by}</div></td><td>{time_tag(n.source_timestamp, view.now)}</td></tr>"
        )
    return (
        '<table class="news"><thead><tr><th>Headline</th><th>Published</th></tr></thead>'
        f"<tbody>{''.join(items)}</tbody></table>"
    )


def _range_links(view: AssetPage) -> str:
    out = []
    for days in view.range_options:
        label = "all" if days is None else f"{days} d"
        if days == view.days:
            out.append(f"<b>{esc(label)}</b>")
        else:
            query = f"?days={days}" if days else ""
            out.append(link(f"/ui/assets/{view.asset.id}{query}", label))
    return f'<span class="range small">range: {"".join(out)}</span>'


def asset_page(view: AssetPage) -> str:
    a = view.asset
    spread = (
        f'<b id="spread" data-value="{view.spread_pct!r}">{esc(fmt_pct(view.spread_pct))}</b>'
        if view.spread_pct is not None
        else '<b id="spread" data-value="">—</b>'
    )
    points = sum(len(s.points) for s in view.series)
    body = (
        f'<h1 id="asset" data-asset-id="{a.id}">{esc(a.name)} '
        f'<span class="muted mono">{esc(a.symbol)}</span></h1>'
        f'<p class="muted sub">asset #{a.id} · slug <span class="mono">{esc(a.slug)}</span> · '
        f"{link(f'/assets/{a.id}', 'JSON /assets/' + str(a.id))} · "
        f"{link(f'/data?asset={a.id}&kind=market', 'JSON /data')}</p>"
        '<div class="stats">'
        f"<div class='stat'>{spread}<span>spread between sources now</span></div>"
        f"<div class='stat'><b>{len(view.prices)}</b><span>sources with a price</span></div>"
        f"<div class='stat'><b>{fmt_int(points)}</b><span>chart points</span></div></div>"
        f"<h2>Price over time {_range_links(view)}</h2>"
        f"{_charts(view.series)}"
        '<p class="muted small">Each line is one market series (venue, base/quote, interval): '
        f"the closes of at most {MAX_CHART_POINTS} buckets computed in SQL, as "
        f"{link(f'/assets/{a.id}/prices', 'JSON /assets/' + str(a.id) + '/prices')} returns "
        "them. One chart per quote currency.</p>"
        f"<h2>Latest price per series</h2>{_price_table(view)}"
        '<p class="muted small">Spread = (max &minus; min) / min &times; 100 over these latest '
        "USD prices that were observed within 24 h of the newest one (same as "
        "<span class='mono'>price_spread_pct</span> in the JSON).</p>"
        f"<h2>Mapping per source</h2>{_mapping_table(view)}"
        f"<h2>Latest news mentioning {esc(a.symbol)}</h2>{_news_list(view)}"
    )
    return page(
        f"{a.name} ({a.symbol})",
        body,
        json_links=(
            (f"/assets/{a.id}", f"/assets/{a.id}"),
            ("/health", "/health"),
            ("/stats", "/stats"),
        ),
        refresh_s=view.refresh_s,
        generated_at=view.now,
    )


@dataclass(frozen=True, slots=True)
class AssetListPage:
    items: Sequence[AssetListItem]
    page: int
    page_size: int
    total: int
    search: str | None = None
    now: datetime | None = None


def _list_href(page_n: int, search: str | None) -> str:
    params: dict[str, str | int] = {"page": page_n}
    if search:
        params["search"] = search
    return f"/ui/assets?{urlencode(params)}"


def asset_list_page(view: AssetListPage) -> str:
    pages = max(1, math.ceil(view.total / view.page_size))
    rows = "".join(
        f'<tr data-asset-id="{a.id}"><td class="num">{a.id}</td>'
        f"<td>{link(f'/ui/assets/{a.id}', a.name)}</td>"
        f'<td class="mono">{esc(a.symbol)}</td><td class="mono">{esc(a.slug)}</td>'
        f'<td class="num">{fmt_int(a.records)}</td>'
        f'<td class="small">{link(f"/assets/{a.id}", "JSON")}</td></tr>'
        for a in view.items
    )
    rows = rows or '<tr><td colspan="6" class="muted">no assets match</td></tr>'
    prev_link = (
        link(_list_href(view.page - 1, view.search), "← previous")
        if view.page > 1
        else '<span class="muted">← previous</span>'
    )
    next_link = (
        link(_list_href(view.page + 1, view.search), "next →")
        if view.page < pages
        else '<span class="muted">next →</span>'
    )
    json_params: dict[str, str | int] = {"page": view.page, "page_size": view.page_size}
    if view.search:
        json_params["search"] = view.search
    json_href = f"/assets?{urlencode(json_params)}"
    body = (
        '<h1>Assets</h1><form class="search" method="get" action="/ui/assets">'
        f'<input type="search" name="search" value="{esc(view.search or "")}" '
        'placeholder="name, slug or symbol" maxlength="100">'
        "<button type=submit>Search</button></form>"
        f'<p class="muted small" id="list-total" data-value="{view.total}">'
        f"{fmt_int(view.total)} asset(s) · page {view.page} of {pages} · "
        f"{link(json_href, 'JSON')}</p>"
        '<table class="assets"><thead><tr><th class="num">Id</th><th>Name</th><th>Symbol</th>'
        f'<th>Slug</th><th class="num">Records</th><th>API</th></tr></thead><tbody>{rows}</tbody>'
        f'</table><div class="pager">{prev_link}{next_link}</div>'
    )
    return page(
        "Assets",
        body,
        json_links=(("/assets", json_href), ("/health", "/health")),
        refresh_s=None,
        generated_at=view.now,
    )
