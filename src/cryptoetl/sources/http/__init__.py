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
  :data:`~._redirects.MAX_REDIRECTS` hops; credentials in a ``Location`` are never used.
* **Echoed credentials.** An accepted body that contains a credential this request sent in a
  header is refused: no legitimate API answers with our key, and such a body must not reach
  raw tables or error excerpts. Credentials in the URL itself are not checked (feeds quote their
  own URL, token included, in self links); the RSS source redacts those from what it stores.
* **Credentials in the URL** (``https://user:pass@host``) are sent as an ``Authorization``
  header, so they are stripped across origins like any other secret header.

Every message and log line goes through the request's :class:`~cryptoetl.redaction.Redactor`
(the settings' secrets plus this request's secret header and query values), redacted before it
is cut; quoted upstream text is cut to :data:`~cryptoetl.redaction.EXCERPT_CHARS`.

The policy lives in private modules, one concern each, behind this public face:

* :mod:`._client` -- :class:`HttpClient`, the session, one attempt of a request;
* :mod:`._request` -- building a request: its secrets, redactor and ``Authorization`` header;
* :mod:`._redirects` -- following redirects, stripping secret headers across origins;
* :mod:`._body` -- the body size limit and the refusal of echoed credentials;
* :mod:`._retry` -- retryable statuses, ``Retry-After`` and the tenacity policy;
* :mod:`._ratelimit` -- the per-host token buckets;
* :mod:`._responses` -- :class:`HttpResponse`, :class:`UpstreamError`, status and body quotes.
"""

from cryptoetl.sources.http._client import HttpClient
from cryptoetl.sources.http._ratelimit import (
    DEFAULT_BURST,
    DEFAULT_HOST_RPM,
    RateLimiter,
    TokenBucket,
)
from cryptoetl.sources.http._responses import (
    HttpResponse,
    UpstreamError,
    body_excerpt,
    body_snippet,
    status_text,
)
from cryptoetl.sources.http._retry import is_retryable_status, retry_after_seconds

__all__: list[str] = [
    "DEFAULT_BURST",
    "DEFAULT_HOST_RPM",
    "HttpClient",
    "HttpResponse",
    "RateLimiter",
    "TokenBucket",
    "UpstreamError",
    "body_excerpt",
    "body_snippet",
    "is_retryable_status",
    "retry_after_seconds",
    "status_text",
]
