"""The one HTTP client policy shared by every upstream.

:class:`HttpClient` wraps one :class:`aiohttp.ClientSession` per worker and adds:

* a per-host token-bucket rate limit (``settings.rate_limit_rpm``, keyed by host name; other
  hosts get :data:`DEFAULT_HOST_RPM`; a small burst of :data:`DEFAULT_BURST` requests is allowed);
* retries with exponential backoff and jitter (tenacity) on 429, any 5xx, timeouts
  (``settings.http_timeout_s`` for the whole request) and connection/payload errors;
* ``Retry-After`` (delta-seconds or HTTP-date) as a floor for the next wait. The attempts are
  capped at ``settings.http_max_attempts`` and the summed waits at ``settings.http_max_wait_s``;
  a ``Retry-After`` beyond the remaining budget fails at once;
* other statuses (400, 401, 403, 404, ...) fail at once, unless listed in ``accept_statuses``.

Every final failure is an :class:`UpstreamError`. Header values given by the caller, the API keys
from the settings and secret-looking query parameters are scrubbed from every message and log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import NoReturn
from urllib.parse import urlsplit

import aiohttp
import msgspec
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential, wait_random
from yarl import URL

from cryptoetl import __version__
from cryptoetl.config import Settings
from cryptoetl.sources.base import SourceError

logger = logging.getLogger("cryptoetl.http")

DEFAULT_HOST_RPM = 600
DEFAULT_BURST = 3
BODY_EXCERPT_CHARS = 200
USER_AGENT = f"cryptoetl/{__version__}"
_SECRET_PARAM = re.compile(r"key|token|secret|passw|signature|auth", re.IGNORECASE)
_MIN_SECRET_LEN = 3
_BUDGET_EPSILON_S = 1e-3


class HttpResponse(msgspec.Struct, frozen=True):
    """A response as received. ``url`` has secret query values replaced by ``***``."""

    url: str
    status: int
    headers: dict[str, str]  # lower-cased header names
    body: bytes


class UpstreamError(SourceError):
    """A request failed for good; the message never contains a secret."""


class _Retryable(Exception):
    """One attempt failed in a way worth retrying (raised inside the retry loop only)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


# --------------------------------------------------------------------------- pure helpers


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


def redact_url(url: URL) -> str:
    """The URL without credentials and with secret-looking query values replaced by ``***``."""
    if url.user is not None or url.password is not None:
        url = url.with_user(None)
    if url.query:
        query = [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in url.query.items()]
        url = url.with_query(query)
    return str(url)


class Scrubber:
    """Replaces known secret values with ``***`` in any text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            values.add(secret.strip())
            values.update(secret.split())  # e.g. the token of "Bearer <token>"
        self._secrets = sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len)[::-1]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def body_excerpt(body: bytes, scrub: Callable[[str], str]) -> str:
    """The first :data:`BODY_EXCERPT_CHARS` characters of ``body`` on one line, scrubbed."""
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return scrub(text)[:BODY_EXCERPT_CHARS]


def status_text(status: int, reason: str | None) -> str:
    """``"HTTP 401 Unauthorized"``."""
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return f"HTTP {status} {reason}".rstrip()


# --------------------------------------------------------------------------- rate limit


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


# --------------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class _Request:
    """One logical GET (all its attempts)."""

    url: str
    display_url: str
    host: str
    params: dict[str, str] | None
    headers: dict[str, str] | None
    accept_statuses: frozenset[int]
    scrub: Scrubber


class HttpClient:
    """``async with HttpClient(settings) as http: response = await http.get(url)``."""

    def __init__(
        self,
        settings: Settings,
        *,
        burst: int = DEFAULT_BURST,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._settings = settings
        self._limiter = RateLimiter(settings.rate_limit_rpm, DEFAULT_HOST_RPM, burst)
        self._backoff = wait_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
        self._jitter = wait_random(0, backoff_initial_s)
        self._known_secrets = settings.secret_values()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        timeout = aiohttp.ClientTimeout(total=self._settings.http_timeout_s)
        self._session = aiohttp.ClientSession(
            timeout=timeout, headers={"User-Agent": USER_AGENT}, raise_for_status=False
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(
        self,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        accept_statuses: frozenset[int] = frozenset({200}),
    ) -> HttpResponse:
        """GET ``url`` under the retry and rate-limit policy; raise :class:`UpstreamError`."""
        request = self._request(url, params, headers, accept_statuses)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=self._stop,
            before_sleep=lambda state: self._log_retry(request, state),
            retry_error_callback=lambda state: self._give_up(request, state),
            sleep=asyncio.sleep,
        )
        response: HttpResponse = await retrying(self._attempt, request)
        return response

    # ----------------------------------------------------------------- one attempt

    def _request(
        self,
        url: str,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        accept_statuses: frozenset[int],
    ) -> _Request:
        secrets = [*self._known_secrets, *(headers or {}).values()]
        secrets += [v for k, v in (params or {}).items() if _SECRET_PARAM.search(k)]
        scrub = Scrubber(secrets)
        try:
            display = redact_url(URL(url).update_query(params) if params else URL(url))
        except (TypeError, ValueError) as exc:
            raise UpstreamError(f"GET {scrub(url)}: invalid URL: {scrub(str(exc))}") from None
        return _Request(
            url=url,
            display_url=scrub(display),
            host=urlsplit(url).hostname or "",
            params=params,
            headers=headers,
            accept_statuses=accept_statuses,
            scrub=scrub,
        )

    async def _attempt(self, request: _Request) -> HttpResponse:
        if self._session is None:
            raise RuntimeError("HttpClient used outside 'async with'")
        await self._limiter.acquire(request.host)
        try:
            async with self._session.get(
                request.url, params=request.params, headers=request.headers
            ) as resp:
                body = await resp.read()
                response = self._response(request, resp, body)
        except TimeoutError:
            raise _Retryable(f"timeout after {self._settings.http_timeout_s:g} s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Retryable(self._exception_text(request, exc)) from None
        except aiohttp.ClientError as exc:
            message = f"GET {request.display_url}: {self._exception_text(request, exc)}"
            raise UpstreamError(message) from None
        return self._check_status(request, response, resp.reason)

    def _response(
        self, request: _Request, resp: aiohttp.ClientResponse, body: bytes
    ) -> HttpResponse:
        headers: dict[str, str] = {}
        for name, value in resp.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return HttpResponse(
            url=request.scrub(redact_url(resp.url)), status=resp.status, headers=headers, body=body
        )

    def _check_status(
        self, request: _Request, response: HttpResponse, reason: str | None
    ) -> HttpResponse:
        status = response.status
        if status in request.accept_statuses:
            return response
        excerpt = body_excerpt(response.body, request.scrub)
        text = (
            f"{status_text(status, reason)}: {excerpt}" if excerpt else status_text(status, reason)
        )
        if is_retryable_status(status):
            raw = response.headers.get("retry-after")
            wait = retry_after_seconds(raw, datetime.now(UTC)) if raw else None
            raise _Retryable(text, retry_after_s=wait)
        raise UpstreamError(f"GET {request.display_url}: {text}")

    @staticmethod
    def _exception_text(request: _Request, exc: BaseException) -> str:
        detail = str(exc)
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return request.scrub(text)

    # ----------------------------------------------------------------- retry policy

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

    def _log_retry(self, request: _Request, state: RetryCallState) -> None:
        reason = _reason_of(state)
        wait_s = round(state.upcoming_sleep, 3)
        logger.warning(
            "GET %s failed (%s); attempt %d of %d, retrying in %.2f s",
            request.display_url,
            reason,
            state.attempt_number,
            self._settings.http_max_attempts,
            wait_s,
            extra={
                "event": "http_retry",
                "url": request.display_url,
                "attempt": state.attempt_number,
                "wait_s": wait_s,
                "reason": reason,
            },
        )

    def _give_up(self, request: _Request, state: RetryCallState) -> NoReturn:
        settings = self._settings
        reason = _reason_of(state)
        asked = _retry_after_of(state)
        remaining = max(0.0, self._remaining_budget(state))
        prefix = f"GET {request.display_url}"
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


__all__: list[str] = [
    "DEFAULT_BURST",
    "DEFAULT_HOST_RPM",
    "HttpClient",
    "HttpResponse",
    "RateLimiter",
    "Scrubber",
    "TokenBucket",
    "UpstreamError",
    "body_excerpt",
    "is_retryable_status",
    "redact_url",
    "retry_after_seconds",
    "status_text",
]
