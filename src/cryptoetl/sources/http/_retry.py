"""When a request is tried again, and how long to wait: the one place a retry is decided.

Statuses worth another attempt (429, any 5xx) and ``Retry-After`` parsing, and the tenacity
policy of :class:`RetryPolicy`: exponential backoff with jitter, ``Retry-After`` as a floor,
``settings.http_max_attempts`` attempts and ``settings.http_max_wait_s`` of summed waits at
most, the ``http_retry`` log line and the message of a request that gives up.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import NoReturn

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential, wait_random

from cryptoetl.config import Settings
from cryptoetl.sources.http._responses import HttpResponse, UpstreamError

logger = logging.getLogger("cryptoetl.http")

_BUDGET_EPSILON_S = 1e-3


class _Retryable(Exception):
    """One attempt failed in a way worth retrying (raised inside the retry loop only)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def retry_after_seconds(header_value: str, now: datetime) -> float | None:
    """Seconds to wait asked by a ``Retry-After`` value, or ``None`` if it cannot be parsed.

    Accepts delta-seconds (``"120"``; a decimal such as ``"1.5"`` is tolerated) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``). A date in the past means "now" (``0.0``). ``now``
    must be timezone-aware.
    """
    value = header_value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" or a missing zone: HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def is_retryable_status(status: int) -> bool:
    """429 and every 5xx are worth another attempt; other statuses are final."""
    return status == HTTPStatus.TOO_MANY_REQUESTS or 500 <= status <= 599


def retry_on_status(response: HttpResponse, text: str) -> None:
    """Raise :class:`_Retryable` (with the wait its ``Retry-After`` asks) for a retryable status."""
    if is_retryable_status(response.status):
        raw = response.headers.get("retry-after")
        wait = retry_after_seconds(raw, datetime.now(UTC)) if raw else None
        raise _Retryable(text, retry_after_s=wait)


class RetryPolicy:
    """The tenacity policy of one client: ``policy.retrying(shown_url)`` runs one request."""

    def __init__(
        self, settings: Settings, *, backoff_initial_s: float, backoff_max_s: float
    ) -> None:
        self._settings = settings
        self._backoff = wait_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
        self._jitter = wait_random(0, backoff_initial_s)

    def retrying(self, display_url: str) -> AsyncRetrying:
        """Retries of the GET shown as ``display_url`` (redacted)."""
        return AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=self._stop,
            before_sleep=lambda state: self._log_retry(display_url, state),
            retry_error_callback=lambda state: self._give_up(display_url, state),
            sleep=asyncio.sleep,
        )

    def _remaining_budget(self, state: RetryCallState) -> float:
        return self._settings.http_max_wait_s - state.idle_for

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._backoff(state) + self._jitter(state)
        backoff = max(0.0, min(backoff, self._remaining_budget(state)))
        asked = _retry_after_of(state)
        return max(backoff, asked or 0.0)

    def _stop(self, state: RetryCallState) -> bool:
        remaining = self._remaining_budget(state)
        return (
            state.attempt_number >= self._settings.http_max_attempts
            or remaining <= _BUDGET_EPSILON_S
            or state.upcoming_sleep > remaining + _BUDGET_EPSILON_S
        )

    def _log_retry(self, display_url: str, state: RetryCallState) -> None:
        reason = _reason_of(state)
        wait_s = round(state.upcoming_sleep, 3)
        logger.warning(
            "GET %s failed (%s); attempt %d of %d, retrying in %.2f s",
            display_url,
            reason,
            state.attempt_number,
            self._settings.http_max_attempts,
            wait_s,
            extra={
                "event": "http_retry",
                "url": display_url,
                "attempt": state.attempt_number,
                "wait_s": wait_s,
                "reason": reason,
            },
        )

    def _give_up(self, display_url: str, state: RetryCallState) -> NoReturn:
        settings = self._settings
        reason = _reason_of(state)
        asked = _retry_after_of(state)
        remaining = max(0.0, self._remaining_budget(state))
        prefix = f"GET {display_url}"
        if state.attempt_number >= settings.http_max_attempts:
            detail = (
                f"gave up after {_attempts(state.attempt_number)} "
                f"(HTTP_MAX_ATTEMPTS={settings.http_max_attempts}); last error: {reason}"
            )
        elif asked is not None and asked > remaining + _BUDGET_EPSILON_S:
            detail = (
                f"{reason}; Retry-After asks to wait {asked:.0f} s but only {remaining:.1f} s of "
                f"the retry budget (HTTP_MAX_WAIT_S={settings.http_max_wait_s:g}) remain; "
                "giving up without waiting"
            )
        else:
            detail = (
                f"retry budget exhausted (HTTP_MAX_WAIT_S={settings.http_max_wait_s:g}) after "
                f"{_attempts(state.attempt_number)}; last error: {reason}"
            )
        raise UpstreamError(f"{prefix}: {detail}")


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def _failure(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def _reason_of(state: RetryCallState) -> str:
    exc = _failure(state)
    return exc.reason if isinstance(exc, _Retryable) else repr(exc)


def _retry_after_of(state: RetryCallState) -> float | None:
    exc = _failure(state)
    return exc.retry_after_s if isinstance(exc, _Retryable) else None
