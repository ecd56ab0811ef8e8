"""The client: :class:`HttpClient`, one :class:`aiohttp.ClientSession` per worker, and one
attempt of a request (rate limit, redirect hops, body, status) under its retry policy."""

from __future__ import annotations

from types import TracebackType

import aiohttp
from aiohttp import hdrs

from cryptoetl import __version__
from cryptoetl.config import Settings
from cryptoetl.sources.http._body import read_body, refuse_echoed_credentials
from cryptoetl.sources.http._ratelimit import DEFAULT_BURST, DEFAULT_HOST_RPM, RateLimiter
from cryptoetl.sources.http._redirects import MAX_REDIRECTS, REDIRECT_STATUSES, follow_redirect
from cryptoetl.sources.http._request import _Hop, _Request, build_request
from cryptoetl.sources.http._responses import (
    HttpResponse,
    UpstreamError,
    body_excerpt,
    status_text,
)
from cryptoetl.sources.http._retry import RetryPolicy, _Retryable, retry_on_status

USER_AGENT = f"cryptoetl/{__version__}"


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
        self._retry = RetryPolicy(
            settings, backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s
        )
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
        request = build_request(url, params, headers or {}, accept_statuses, self._redactor)
        retrying = self._retry.retrying(request.display_url)
        response: HttpResponse = await retrying(self._attempt, request)
        return response

    async def _attempt(self, request: _Request) -> HttpResponse:
        if self._session is None:
            raise RuntimeError("HttpClient used outside 'async with'")
        settings = self._settings
        hop = _Hop(request.url, request.params, request.headers)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                await self._limiter.acquire(hop.url.host or "")
                async with self._session.get(
                    hop.url, params=hop.params, headers=hop.headers, allow_redirects=False
                ) as resp:
                    location = resp.headers.get(hdrs.LOCATION)
                    if resp.status not in REDIRECT_STATUSES or location is None:
                        body = await read_body(request, resp, settings.http_max_body_bytes)
                        response = _response(request, resp, body)
                        return _check_status(request, response, resp.reason)
                hop = follow_redirect(
                    request, hop, resp.status, location, settings.http_cross_origin_redirects
                )
        except TimeoutError:
            raise _Retryable(f"timeout after {settings.http_timeout_s:g} s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Retryable(request.exception_text(exc)) from None
        except aiohttp.ClientError as exc:
            message = f"GET {request.display_url}: {request.exception_text(exc)}"
            raise UpstreamError(message) from None
        raise UpstreamError(
            f"GET {request.display_url}: more than {MAX_REDIRECTS} redirects "
            f"(the last to {request.display(hop.full_url)})"
        )


def _response(request: _Request, resp: aiohttp.ClientResponse, body: bytes) -> HttpResponse:
    headers: dict[str, str] = {}
    for name, value in resp.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpResponse(
        url=request.display(resp.url), status=resp.status, headers=headers, body=body
    )


def _check_status(request: _Request, response: HttpResponse, reason: str | None) -> HttpResponse:
    status = response.status
    shown_status = status_text(status, request.redact.excerpt(reason or ""))
    if status in request.accept_statuses:
        refuse_echoed_credentials(request, response, shown_status)
        return response
    excerpt = body_excerpt(response.body, request.redact)
    text = f"{shown_status}: {excerpt}" if excerpt else shown_status
    retry_on_status(response, text)
    raise UpstreamError(f"GET {request.display_url}: {text}")
