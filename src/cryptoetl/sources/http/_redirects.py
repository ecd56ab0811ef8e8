"""Redirects, followed here rather than by aiohttp (which forwards every header but
``Authorization`` to another origin): the next :class:`_Hop`, with the secret headers stripped
or the redirect refused when it leaves the origin (``settings.http_cross_origin_redirects``),
each hop logged as ``http_redirect``."""

from __future__ import annotations

import logging

from yarl import URL

from cryptoetl.config import CrossOriginRedirects
from cryptoetl.sources.http._request import _Hop, _Request
from cryptoetl.sources.http._responses import UpstreamError

logger = logging.getLogger("cryptoetl.http")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10  # as aiohttp and browsers


def follow_redirect(
    request: _Request,
    hop: _Hop,
    status: int,
    location: str,
    cross_origin: CrossOriginRedirects,
) -> _Hop:
    """The next hop of a redirect, with secret headers stripped when the origin changes."""
    source = hop.full_url
    target = _redirect_target(request, source, status, location)
    headers = hop.headers
    stripped: list[str] = []
    leaves_origin = target.origin() != source.origin()
    if leaves_origin:
        if cross_origin == "refuse":
            raise UpstreamError(
                f"GET {request.display_url}: HTTP {status} redirect to another origin "
                f"({request.display(target)}) refused "
                "(HTTP_CROSS_ORIGIN_REDIRECTS=refuse)"
            )
        stripped = [name for name in headers if name.lower() in request.secret_headers]
        headers = {k: v for k, v in headers.items() if k not in stripped}
    shown_from, shown_to = request.display(source), request.display(target)
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
            "cross_origin": leaves_origin,
            "stripped_headers": stripped,
        },
    )
    return _Hop(target, None, headers)


def _redirect_target(request: _Request, source: URL, status: int, location: str) -> URL:
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
