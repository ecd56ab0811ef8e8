"""``GET /metrics``: Prometheus text exposition of this process's request counts and latencies.

A deliberately tiny registry instead of a client library: two metric families, labelled by
method, route *template* (``/assets/{asset_id}``, never the raw path, so cardinality stays
bounded) and status. Counts are per process: with several Granian workers each scrape sees the
worker that answered it (label ``pid`` tells them apart).
"""

from __future__ import annotations

import bisect
import os
import time

from litestar import Response, get
from litestar.di import NamedDependency

# Seconds; covers a cached-plan read on loopback (~1 ms) up to a stalled database.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Series:
    __slots__ = ("bucket_counts", "count", "total")

    def __init__(self) -> None:
        self.bucket_counts = [0] * len(BUCKETS)  # non-cumulative; summed when rendered
        self.count = 0
        self.total = 0.0


class Registry:
    """Request counter + latency histogram keyed by (method, route, status)."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], _Series] = {}
        self.started_at = time.time()
        self.in_flight = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.count += 1
        series.total += seconds
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            series.bucket_counts[index] += 1

    def render(self) -> str:
        pid = os.getpid()
        lines = [
            "# HELP cryptoetl_http_requests_total HTTP requests answered, by route template.",
            "# TYPE cryptoetl_http_requests_total counter",
        ]
        items = sorted(self._series.items())
        for (method, route, status), series in items:
            labels = _labels(pid, method, route, status)
            lines.append(f"cryptoetl_http_requests_total{{{labels}}} {series.count}")
        lines += [
            "# HELP cryptoetl_http_request_duration_seconds Time from request to last byte.",
            "# TYPE cryptoetl_http_request_duration_seconds histogram",
        ]
        for (method, route, status), series in items:
            labels = _labels(pid, method, route, status)
            cumulative = 0
            for bound, n in zip(BUCKETS, series.bucket_counts, strict=True):
                cumulative += n
                lines.append(
                    f'cryptoetl_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} '
                    f"{cumulative}"
                )
            lines.append(
                f'cryptoetl_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} '
                f"{series.count}"
            )
            name = "cryptoetl_http_request_duration_seconds"
            lines.append(f"{name}_sum{{{labels}}} {series.total}")
            lines.append(f"{name}_count{{{labels}}} {series.count}")
        lines += [
            "# HELP cryptoetl_http_requests_in_flight Requests being answered right now.",
            "# TYPE cryptoetl_http_requests_in_flight gauge",
            f'cryptoetl_http_requests_in_flight{{pid="{pid}"}} {self.in_flight}',
            "# HELP cryptoetl_process_start_time_seconds Start of this API process (Unix time).",
            "# TYPE cryptoetl_process_start_time_seconds gauge",
            f'cryptoetl_process_start_time_seconds{{pid="{pid}"}} {self.started_at}',
        ]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pid: int, method: str, route: str, status: int) -> str:
    return f'pid="{pid}",method="{_escape(method)}",route="{_escape(route)}",status="{status}"'


@get(
    "/metrics",
    summary="Prometheus metrics of this API process",
    media_type=CONTENT_TYPE,
    include_in_schema=True,
)
async def metrics(registry: NamedDependency[Registry]) -> Response[str]:
    return Response(registry.render(), media_type=CONTENT_TYPE)
