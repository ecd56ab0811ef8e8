"""The one redaction rule for everything that leaves the process.

Logs, HTTP error messages, stored run errors and warnings, checkpoints and the settings shown to
people all go through :class:`Redactor` (or :func:`redact_url` for a URL on its own).

**What is a secret.** Every value of ``Settings.secret_values()`` (API keys, database passwords,
every credential found in a configured URL: see :func:`url_credentials`), plus, for one HTTP
request, the values it sends in secret-looking headers and query parameters
(:func:`is_secret_name`). Values shorter than :data:`MIN_SECRET_CHARS` are ignored: replacing
them would shred ordinary text, and no real credential is that short.

**The rule.**

1. *Redact, then truncate.* :meth:`Redactor.truncate` and :meth:`Redactor.excerpt` do both, in
   that order, so our own cuts never leave part of a secret behind.
2. *Partial echoes count.* A secret is replaced wherever it appears, and so is every run of
   :data:`PARTIAL_SECRET_CHARS` or more consecutive characters taken from a secret: the prefix
   that someone else's truncation left (an upstream echoing 30 of the 31 characters of our key,
   an excerpt cut by a source before it knew any secret), a suffix, or the middle. The price is
   over-redaction: a dictionary-word password also hides that word in logs. Choose random
   secrets.
3. *URLs* are shown through :func:`redact_url`: no password, no token-as-username, and
   secret-looking query values as ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"
MIN_SECRET_CHARS = 4
PARTIAL_SECRET_CHARS = 8
# Upstream text quoted in our messages (error bodies, exception texts) is cut to this length,
# as the API cuts the values it echoes in its error bodies.
EXCERPT_CHARS = 200
ELLIPSIS = "…"
_SECRET_NAME = re.compile(r"key|token|secret|passw|signature|auth|cookie|session", re.IGNORECASE)
_WEB_SCHEMES = ("http", "https")


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter called ``name`` carries a credential."""
    return _SECRET_NAME.search(name) is not None


class Redactor:
    """Replaces secrets, and any :data:`PARTIAL_SECRET_CHARS`-long part of one, by ``***``."""

    __slots__ = ("_fragments", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {value.strip() for value in secrets}
        values = {value for value in values if len(value) >= MIN_SECRET_CHARS}
        # Longest first, so a secret that contains another one is replaced whole.
        self._secrets = tuple(sorted(values, key=len, reverse=True))
        width = PARTIAL_SECRET_CHARS
        self._fragments = frozenset(
            value[start : start + width]
            for value in values
            for start in range(len(value) - width + 1)
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def with_secrets(self, more: Iterable[str]) -> Redactor:
        """A redactor for these secrets and ``more`` (e.g. one request's header values)."""
        return Redactor((*self._secrets, *more))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        # The membership tests run at C speed; most texts hold no fragment and stop here.
        if any(fragment in text for fragment in self._fragments):
            return self._mask_fragments(text)
        return text

    def _mask_fragments(self, text: str) -> str:
        """Mask every window of :data:`PARTIAL_SECRET_CHARS` characters found in a secret."""
        width = PARTIAL_SECRET_CHARS
        spans: list[list[int]] = []
        for start in range(len(text) - width + 1):
            if text[start : start + width] in self._fragments:
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = start + width  # overlapping windows: one masked run
                else:
                    spans.append([start, start + width])
        if not spans:
            return text
        parts: list[str] = []
        kept_from = 0
        for start, end in spans:
            parts += [text[kept_from:start], MASK]
            kept_from = end
        parts.append(text[kept_from:])
        return "".join(parts)

    def truncate(self, text: str, limit: int) -> str:
        """``text`` redacted, *then* cut to at most ``limit`` characters."""
        return truncate(self(text), limit)

    def excerpt(self, text: str, limit: int = EXCERPT_CHARS) -> str:
        """Upstream text for a message: one line, redacted, then cut to ``limit``."""
        return self.truncate(" ".join(text.split()), limit)

    def redact_json(self, value: Any) -> Any:
        """``value`` with every string in it (mapping keys included) redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {self.redact_json(k): self.redact_json(v) for k, v in value.items()}
        # Exactly lists and tuples: a struct_time (a tuple subclass, from feedparser) stays as is.
        if type(value) in (list, tuple):
            return [self.redact_json(item) for item in value]
        return value


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ``…`` marking a cut (no redaction)."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


# --------------------------------------------------------------------------- URLs


def _split_authority(url: str) -> tuple[str, str, str, str] | None:
    """``(scheme_and_slashes, userinfo, host_and_port, rest)``, or None without an authority.

    Done on the text rather than with a URL parser so that malformed URLs (a bad port, a stray
    bracket), which are exactly the ones quoted in configuration errors, are redacted too.
    """
    scheme, slashes, after = url.partition("//")
    if not slashes:
        return None
    cut = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    userinfo, _, host = after[:cut].rpartition("@")
    return scheme + slashes, userinfo, host, after[cut:]


def _scheme(url: str) -> str:
    return url.partition(":")[0].lower()


def _userinfo_secret(userinfo: str, scheme: str) -> str | None:
    """The credential of a URL's userinfo, raw (still percent-encoded).

    The password when there is one. Without a password, an http(s) user name *is* the token
    (``https://TOKEN@host/feed``, the convention of most feed services); a database URL's lone
    user is a role name, not a secret.
    """
    user, colon, password = userinfo.partition(":")
    if colon:
        return password or None
    if scheme in _WEB_SCHEMES and user:
        return user
    return None


def _query_parts(rest: str) -> tuple[str, str, str]:
    """``(path, query, fragment_with_hash)`` of what follows the authority."""
    before_fragment, hash_sign, fragment = rest.partition("#")
    path, _, query = before_fragment.partition("?")
    return path, query, hash_sign + fragment


def _is_secret_pair(pair: str) -> bool:
    """Whether one ``name=value`` of a query string carries a credential."""
    name, equals, value = pair.partition("=")
    return bool(equals and value) and is_secret_name(unquote(name))


def _secret_query_values(query: str) -> list[str]:
    return [pair.partition("=")[2] for pair in query.split("&") if _is_secret_pair(pair)]


def url_credentials(url: str) -> list[str]:
    """Every credential in ``url``, both as written and percent-decoded (for redactors)."""
    raw: list[str] = []
    parts = _split_authority(url)
    if parts is not None:
        _, userinfo, _, rest = parts
        secret = _userinfo_secret(userinfo, _scheme(url))
        if secret:
            raw.append(secret)
        raw += _secret_query_values(_query_parts(rest)[1])
    else:
        raw += _secret_query_values(_query_parts(url)[1])
    return list(dict.fromkeys([*raw, *(unquote(value) for value in raw)]))


def redact_url(url: object) -> str:
    """``url`` (text or a yarl URL) for display: credentials and secret query values ``***``.

    A path with a query (``/x?key=...``, no scheme nor host) has its query redacted too.
    """
    text = str(url)
    parts = _split_authority(text)
    if parts is None:
        prefix, host, rest = "", "", text
    else:
        prefix, userinfo, host, rest = parts
        host = _redacted_userinfo(userinfo, _scheme(text)) + host
    path, query, fragment = _query_parts(rest)
    if query:
        pairs = [
            f"{pair.partition('=')[0]}={MASK}" if _is_secret_pair(pair) else pair
            for pair in query.split("&")
        ]
        path = f"{path}?{'&'.join(pairs)}"
    return f"{prefix}{host}{path}{fragment}"


def _redacted_userinfo(userinfo: str, scheme: str) -> str:
    """``userinfo@`` as shown: ``user:***@``, ``***@`` for a token, or unchanged."""
    if not userinfo:
        return ""
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{user}:{MASK}@"
    if _userinfo_secret(userinfo, scheme):
        return f"{MASK}@"
    return f"{userinfo}@"


__all__ = [
    "ELLIPSIS",
    "EXCERPT_CHARS",
    "MASK",
    "MIN_SECRET_CHARS",
    "PARTIAL_SECRET_CHARS",
    "Redactor",
    "is_secret_name",
    "redact_url",
    "truncate",
    "url_credentials",
]
