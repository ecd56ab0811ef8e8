"""The per-host rate limit: one :class:`TokenBucket` per host name, in a :class:`RateLimiter`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

DEFAULT_HOST_RPM = 600
DEFAULT_BURST = 3


class TokenBucket:
    """A token bucket: ``capacity`` requests at once, refilled at ``rate_per_s``.

    :meth:`reserve` takes a token (possibly borrowing one from the future) and returns how long
    the caller must sleep before sending, so concurrent callers queue up fairly without a lock.
    """

    def __init__(
        self, rate_per_s: float, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_s
        self._capacity = float(max(1, capacity))
        self._clock = clock
        self._tokens = self._capacity
        self._updated = clock()

    def reserve(self) -> float:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class RateLimiter:
    """One :class:`TokenBucket` per host name; an rpm of 0 or less means "no limit"."""

    def __init__(self, rpm_by_host: Mapping[str, int], default_rpm: int, burst: int) -> None:
        self._rpm = {host.lower(): rpm for host, rpm in rpm_by_host.items()}
        self._default_rpm = default_rpm
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def delay_for(self, host: str) -> float:
        host = host.lower()
        rpm = self._rpm.get(host, self._default_rpm)
        if rpm <= 0:
            return 0.0
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = TokenBucket(rpm / 60.0, self._burst)
        return bucket.reserve()

    async def acquire(self, host: str) -> None:
        delay = self.delay_for(host)
        if delay > 0:
            await asyncio.sleep(delay)
