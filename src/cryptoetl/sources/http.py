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

Hostile upstreams (issue 14) meet these rules, each failing the request at once (retrying would
only do the same harm again) with a message that names the setting:

* **Body size.** The body is streamed and counted as it is read, *after* decompression; past
  ``settings.http_max_body_bytes`` reading stops and the connection is closed. A gzip bomb or an
  endless chunked body costs at most that much memory (aiohttp inflates in bounded steps and
  only as fast as we read).
* **Redirects** are followed here, not by aiohttp, which forwards every header but
  ``Authorization`` to another origin. A *secret header* is one whose name looks secret
  (:func:`~cryptoetl.redaction.is_secret_name`: ``Authorization``, ``x-cg-demo-api-key``...) or
  whose value holds a configured secret. When a redirect leaves the origin (scheme, host, port),
  ``settings.http_cross_origin_redirects`` decides: ``strip`` (the default) follows it without
  any secret header, ``refuse`` fails the request. Each hop is logged (``http_redirect``, with
  the target and the headers stripped), and :attr:`HttpResponse.url` is the final URL. At most
  :data:`MAX_REDIRECTS` hops; credentials in a ``Location`` are never used.
* **Echoed credentials.** An accepted body that contains a credential this request sent in a
  header is refused: no legitimate API answers with our key, and such a body must not reach
  raw tables or error excerpts. Credentials in the URL itself are not checked (feeds quote their
  own URL, token included, in self links); the RSS source redacts those from what it stores.
* **Credentials in the URL** (``https://user:pass@host``) are sent as an ``Authorization``
  header, so they are stripped across origins like any other secret header.

Every message and log line goes through the request's :class:`~cryptoetl.redaction.Redactor`
(the settings' secrets plus this request's secret header and query values), redacted before it
is cut; quoted upstream text is cut to :data:`~cryptoetl.redaction.EXCERPT_CHARS`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import NoReturn

import aiohttp
import msgspec
from aiohttp import hdrs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential, wait_random
from yarl import URL

from cryptoetl import __version__
from cryptoetl.config import Settings
from cryptoetl.redaction import (
    MIN_SECRET_CHARS,
    Redactor,
    is_secret_name,
    redact_url,
    url_credentials,
)
from cryptoetl.sources.base import SourceError

logger = logging.getLogger("cryptoetl.http")

DEFAULT_HOST_RPM = 600
DEFAULT_BURST = 3
USER_AGENT = f"cryptoetl/{__version__}"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10  # as aiohttp and browsers
READ_CHUNK_BYTES = 64 * 1024
# An excerpt shows 200 characters; it is taken from this much of the body, decoded and redacted
# first (a body is never decoded whole just to quote its start).
EXCERPT_SOURCE_BYTES = 64 * 1024
SNIPPET_CHARS = 60
_BUDGET_EPSILON_S = 1e-3


class HttpResponse(msgspec.Struct, frozen=True):
    """A response as received. ``url`` is the final URL (after redirects), redacted."""

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


def body_excerpt(body: bytes, redact: Redactor) -> str:
    """The start of ``body`` on one line for a message: decoded, redacted, *then* cut."""
    return redact.excerpt(body[:EXCERPT_SOURCE_BYTES].decode("utf-8", errors="replace"))


def body_snippet(body: bytes) -> str:
    """The first :data:`SNIPPET_CHARS` of a body on one line, for a parser's error message.

    Cut without knowing any secret (parsers have none). That is safe: the client refuses a body
    that echoes a credential it sent, and every place a message is stored or logged redacts
    any :data:`~cryptoetl.redaction.PARTIAL_SECRET_CHARS`-character run of a secret."""
    text = body[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    return " ".join(text.split())[:SNIPPET_CHARS]


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
    """One logical GET (all its attempts and redirects)."""

    url: URL  # without user info: URL credentials travel in the Authorization header
    display_url: str
    params: dict[str, str] | None
    headers: dict[str, str]
    secret_headers: frozenset[str]  # lower-cased names
    # (header name, value) of every credential sent in a header, never expected back in a body
    sent_credentials: tuple[tuple[str, str], ...]
    accept_statuses: frozenset[int]
    redact: Redactor


@dataclass(frozen=True, slots=True)
class _Hop:
    """Where one request of a redirect chain goes, and with which headers."""

    url: URL
    params: dict[str, str] | None
    headers: dict[str, str]

    @property
    def full_url(self) -> URL:
        return self.url.update_query(self.params) if self.params else self.url


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
        self._redactor = settings.redactor()
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
        """GET ``url`` under the retry, rate-limit and redirect policy; raise UpstreamError."""
        request = self._request(url, params, headers or {}, accept_statuses)
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

    # ----------------------------------------------------------------- the request

    def _request(
        self,
        url: str,
        params: dict[str, str] | None,
        headers: Mapping[str, str],
        accept_statuses: frozenset[int],
    ) -> _Request:
        credentials = [(k, v) for k, v in headers.items() if self._is_secret(k, v)]
        secret_params = [v for k, v in (params or {}).items() if is_secret_name(k)]
        redact = self._redactor.with_secrets(
            [*url_credentials(url), *secret_params, *(v for _, v in credentials)]
        )
        try:
            target = URL(url)
            display = redact(redact_url(target.update_query(params) if params else target))
            auth = aiohttp.BasicAuth.from_url(target)
        except (TypeError, ValueError) as exc:
            raise UpstreamError(
                f"GET {redact(redact_url(url))}: invalid URL: {redact.excerpt(str(exc))}"
            ) from None
        sent = dict(headers)
        if auth is not None:
            sent[hdrs.AUTHORIZATION] = auth.encode()
            target = target.with_user(None)
            # The header, and what it encodes: the password, or a lone user name (a token).
            credentials.append((hdrs.AUTHORIZATION, sent[hdrs.AUTHORIZATION]))
            credentials.append((hdrs.AUTHORIZATION, auth.password or auth.login))
            redact = redact.with_secrets([sent[hdrs.AUTHORIZATION]])
        return _Request(
            url=target,
            display_url=display,
            params=params,
            headers=sent,
            secret_headers=frozenset(name.lower() for name, _ in credentials),
            sent_credentials=tuple((n, v) for n, v in credentials if len(v) >= MIN_SECRET_CHARS),
            accept_statuses=accept_statuses,
            redact=redact,
        )

    def _is_secret(self, name: str, value: str) -> bool:
        return is_secret_name(name) or any(s in value for s in self._redactor.secrets)

    # ----------------------------------------------------------------- one attempt

    async def _attempt(self, request: _Request) -> HttpResponse:
        if self._session is None:
            raise RuntimeError("HttpClient used outside 'async with'")
        hop = _Hop(request.url, request.params, request.headers)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                await self._limiter.acquire(hop.url.host or "")
                async with self._session.get(
                    hop.url, params=hop.params, headers=hop.headers, allow_redirects=False
                ) as resp:
                    location = resp.headers.get(hdrs.LOCATION)
                    if resp.status not in REDIRECT_STATUSES or location is None:
                        body = await self._read_body(request, resp)
                        response = self._response(request, resp, body)
                        return self._check_status(request, response, resp.reason)
                hop = self._follow(request, hop, resp.status, location)
        except TimeoutError:
            raise _Retryable(f"timeout after {self._settings.http_timeout_s:g} s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Retryable(self._exception_text(request, exc)) from None
        except aiohttp.ClientError as exc:
            message = f"GET {request.display_url}: {self._exception_text(request, exc)}"
            raise UpstreamError(message) from None
        raise UpstreamError(
            f"GET {request.display_url}: more than {MAX_REDIRECTS} redirects "
            f"(the last to {self._display(request, hop.full_url)})"
        )

    async def _read_body(self, request: _Request, resp: aiohttp.ClientResponse) -> bytes:
        """The body, counted as it is read (decompressed); refused past the size limit."""
        limit = self._settings.http_max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                status = status_text(resp.status, None)
                raise UpstreamError(
                    f"GET {request.display_url}: {status}: the response body exceeds "
                    f"HTTP_MAX_BODY_BYTES={limit} bytes (counted after decompression); "
                    "stopped reading it"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _follow(self, request: _Request, hop: _Hop, status: int, location: str) -> _Hop:
        """The next hop of a redirect, with secret headers stripped when the origin changes."""
        source = hop.full_url
        target = self._redirect_target(request, source, status, location)
        headers = hop.headers
        stripped: list[str] = []
        cross_origin = target.origin() != source.origin()
        if cross_origin:
            if self._settings.http_cross_origin_redirects == "refuse":
                raise UpstreamError(
                    f"GET {request.display_url}: HTTP {status} redirect to another origin "
                    f"({self._display(request, target)}) refused "
                    "(HTTP_CROSS_ORIGIN_REDIRECTS=refuse)"
                )
            stripped = [name for name in headers if name.lower() in request.secret_headers]
            headers = {k: v for k, v in headers.items() if k not in stripped}
        shown_from, shown_to = self._display(request, source), self._display(request, target)
        logger.info(
            "GET %s redirected (HTTP %d) to %s",
            shown_from,
            status,
            shown_to,
            extra={
                "event": "http_redirect",
                "url": shown_from,
                "location": shown_to,
                "status": status,
                "cross_origin": cross_origin,
                "stripped_headers": stripped,
            },
        )
        return _Hop(target, None, headers)

    def _redirect_target(self, request: _Request, source: URL, status: int, location: str) -> URL:
        try:
            target = source.join(URL(location))
            usable = target.scheme in ("http", "https") and bool(target.host)
        except ValueError:
            usable = False
        if not usable:
            raise UpstreamError(
                f"GET {request.display_url}: HTTP {status} redirect to an unusable Location "
                f"{request.redact.excerpt(location)!r}"
            )
        # Only the credentials we were configured with are ever sent.
        return target.with_user(None) if target.user is not None else target

    def _display(self, request: _Request, url: URL) -> str:
        return request.redact(redact_url(url))

    def _response(
        self, request: _Request, resp: aiohttp.ClientResponse, body: bytes
    ) -> HttpResponse:
        headers: dict[str, str] = {}
        for name, value in resp.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return HttpResponse(
            url=self._display(request, resp.url), status=resp.status, headers=headers, body=body
        )

    def _check_status(
        self, request: _Request, response: HttpResponse, reason: str | None
    ) -> HttpResponse:
        status = response.status
        shown_status = status_text(status, request.redact.excerpt(reason or ""))
        if status in request.accept_statuses:
            self._refuse_echoed_credentials(request, response, shown_status)
            return response
        excerpt = body_excerpt(response.body, request.redact)
        text = f"{shown_status}: {excerpt}" if excerpt else shown_status
        if is_retryable_status(status):
            raw = response.headers.get("retry-after")
            wait = retry_after_seconds(raw, datetime.now(UTC)) if raw else None
            raise _Retryable(text, retry_after_s=wait)
        raise UpstreamError(f"GET {request.display_url}: {text}")

    @staticmethod
    def _refuse_echoed_credentials(
        request: _Request, response: HttpResponse, shown_status: str
    ) -> None:
        for name, value in request.sent_credentials:
            if value.encode() in response.body:
                raise UpstreamError(
                    f"GET {request.display_url}: {shown_status}: the response body contains the "
                    f"credential sent in the {name} header; body refused"
                )

    @staticmethod
    def _exception_text(request: _Request, exc: BaseException) -> str:
        detail = str(exc)
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return request.redact.excerpt(text)

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
    "TokenBucket",
    "UpstreamError",
    "body_excerpt",
    "is_retryable_status",
    "retry_after_seconds",
    "status_text",
]
