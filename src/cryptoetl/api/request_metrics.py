"""Request metrics of the API (prometheus-client), correct with several Granian workers.

Each Granian worker is a process of its own, so its counts live in its own memory unless they
are shared. prometheus-client's multiprocess mode shares them through files, one set per
process in one directory, summed at scrape time by whichever worker answers:

* ``PROMETHEUS_MULTIPROC_DIR`` set: that directory (prometheus-client's contract: the operator
  empties it before the server starts);
* else, in a Granian worker: a directory of its own server (``<tmp>/cryptoetl-api-metrics/``
  ``<server pid>-<server start>``), so that every worker of one ``cryptoetl api`` shares it and
  a restarted server starts from zero; directories of servers no longer running are removed;
* else (one process: tests, an embedded server): in memory.

Labels come from fixed sets, so no client can grow the series without bound: the method is one
of :data:`METHODS` or ``OTHER``, the route is the route *template* (``/assets/{asset_id}``) or
``unmatched``, the status is the one we answered. No label tells processes apart.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)
# Seconds; covers a cached-plan read on loopback (~1 ms) up to a stalled database.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SHARED_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
GRANIAN_WORKER = "granian-worker"  # the name Granian gives its worker processes
SERVERS_DIR = Path(tempfile.gettempdir()) / "cryptoetl-api-metrics"

# `_created` samples are per process and meaningless once summed; leave them out everywhere.
disable_created_metrics()


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


def _start_time(pid: int) -> str | None:
    """A process's start (clock ticks since boot, /proc/<pid>/stat field 22), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _server_directory(server_pid: int) -> Path:
    """This server's directory; those of servers no longer running are removed."""
    key = f"{server_pid}-{_start_time(server_pid) or 'unknown'}"
    with contextlib.suppress(OSError):
        for other in SERVERS_DIR.iterdir():
            pid, _, start = other.name.partition("-")
            running = pid.isdigit() and _alive(int(pid)) and start == _start_time(int(pid))
            if other.name != key and not running:
                shutil.rmtree(other, ignore_errors=True)
    return SERVERS_DIR / key


def _forget_dead_workers(path: Path) -> None:
    """A worker that died leaves its in-flight gauge behind; its counters stay (they count)."""
    for gauge in path.glob("gauge_livesum_*.db"):
        pid = gauge.stem.rsplit("_", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(path))


def share_across_workers() -> Path | None:
    """Choose where this process keeps its counts (see the module docstring); call it before
    the first :func:`request_metrics`. Returns the shared directory, None for memory."""
    configured = os.environ.get(SHARED_DIR_VARIABLE)
    if configured:
        path = Path(configured)
    elif multiprocessing.current_process().name == GRANIAN_WORKER:
        path = _server_directory(os.getppid())
    else:
        return None
    path.mkdir(parents=True, exist_ok=True)
    os.environ[SHARED_DIR_VARIABLE] = str(path)
    # prometheus-client picks memory or files when it is first imported, which may have been
    # before the directory was known: pick again, before any metric exists.
    values.ValueClass = values.get_value_class()
    _forget_dead_workers(path)
    return path


class RequestMetrics:
    """Requests answered and their latency by (method, route, status); requests in flight."""

    def __init__(self, shared_dir: Path | None) -> None:
        self.shared_dir = shared_dir
        # Shared: the live objects only write their files; a scrape reads every process's.
        self._registry = None if shared_dir else CollectorRegistry()
        labels = ("method", "route", "status")
        self.requests = Counter(
            "cryptoetl_http_requests",
            "HTTP requests answered, by method, route template and status.",
            labels,
            registry=self._registry,
        )
        self.duration = Histogram(
            "cryptoetl_http_request_duration_seconds",
            "Time from request to last byte, by method, route template and status.",
            labels,
            buckets=BUCKETS,
            registry=self._registry,
        )
        self.in_flight = Gauge(
            "cryptoetl_http_requests_in_flight",
            "Requests being answered right now (all workers).",
            registry=self._registry,
            multiprocess_mode="livesum",
        )
        # The labelled children, looked up once per label set (labels() takes a lock and
        # validates; routes, methods and statuses are few).
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method_label(method), route, status)  # a client's method name never is a key
        children = self._children.get(key)
        if children is None:
            labels = (key[0], route, str(status))
            children = (self.requests.labels(*labels), self.duration.labels(*labels))
            self._children[key] = children
        requests, duration = children
        requests.inc()
        duration.observe(seconds)

    def render(self) -> bytes:
        """Prometheus text exposition of every worker's requests."""
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.shared_dir))
        return generate_latest(registry)


_metrics: RequestMetrics | None = None


def request_metrics() -> RequestMetrics:
    """This process's request metrics (one set per process: metric objects share its files)."""
    global _metrics
    if _metrics is None:
        configured = os.environ.get(SHARED_DIR_VARIABLE)
        _metrics = RequestMetrics(Path(configured) if configured else None)
    return _metrics
