"""What a request gives back: :class:`HttpResponse`, :class:`UpstreamError`, and how a status
or the start of a body is quoted in a message."""

from __future__ import annotations

from http import HTTPStatus

import msgspec

from cryptoetl.redaction import Redactor
from cryptoetl.sources.base import SourceError

# An excerpt shows 200 characters; it is taken from this much of the body, decoded and redacted
# first (a body is never decoded whole just to quote its start).
EXCERPT_SOURCE_BYTES = 64 * 1024
SNIPPET_CHARS = 60


class HttpResponse(msgspec.Struct, frozen=True):
    """A response as received. ``url`` is the final URL (after redirects), redacted."""

    url: str
    status: int
    headers: dict[str, str]  # lower-cased header names
    body: bytes


class UpstreamError(SourceError):
    """A request failed for good; the message never contains a secret."""


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
