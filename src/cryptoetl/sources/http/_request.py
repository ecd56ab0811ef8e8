"""One logical GET as the client sends it: :class:`_Request` (built by :func:`build_request`)
and :class:`_Hop`, one request of its redirect chain.

Building a request decides what is secret in it (headers whose name looks secret or whose value
holds a configured secret, secret query values, URL credentials) and so its
:class:`~cryptoetl.redaction.Redactor`, and turns URL credentials into an ``Authorization``
header, stripped across origins like any other secret header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import hdrs
from yarl import URL

from cryptoetl.redaction import (
    MIN_SECRET_CHARS,
    Redactor,
    is_secret_name,
    redact_url,
    url_credentials,
)
from cryptoetl.sources.http._responses import UpstreamError


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

    def display(self, url: URL | str) -> str:
        """``url`` as it may be shown: credentials and this request's secrets redacted."""
        return self.redact(redact_url(url))

    def exception_text(self, exc: BaseException) -> str:
        detail = str(exc)
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return self.redact.excerpt(text)


@dataclass(frozen=True, slots=True)
class _Hop:
    """Where one request of a redirect chain goes, and with which headers."""

    url: URL
    params: dict[str, str] | None
    headers: dict[str, str]

    @property
    def full_url(self) -> URL:
        return self.url.update_query(self.params) if self.params else self.url


def build_request(
    url: str,
    params: dict[str, str] | None,
    headers: Mapping[str, str],
    accept_statuses: frozenset[int],
    redactor: Redactor,
) -> _Request:
    """The request for ``url``; ``redactor`` holds the settings' secrets."""
    credentials = [(k, v) for k, v in headers.items() if _is_secret(redactor, k, v)]
    secret_params = [v for k, v in (params or {}).items() if is_secret_name(k)]
    redact = redactor.with_secrets(
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


def _is_secret(redactor: Redactor, name: str, value: str) -> bool:
    return is_secret_name(name) or any(s in value for s in redactor.secrets)
