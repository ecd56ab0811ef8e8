"""Fault specs: what the stub can be told to do wrong, and the two ways of writing it.

A :class:`Fault` applies to the first ``count`` requests whose path starts with ``path`` (``"/"``
matches everything; use a large ``count``, or ``always`` in the string form, for "always"). The
first fault in the list that matches and has calls remaining is used. ``kind`` is one of:

* an HTTP status ``"400"``..``"599"`` (typically ``429``, ``500``, ``502``, ``503``): that status
  with a small JSON error body; ``retry_after`` (seconds) adds a ``Retry-After`` header, as
  delta-seconds or, with ``retry_after_date``, as an HTTP-date that many seconds from now;
* ``delay``: wait ``delay_s`` seconds, then answer normally (``delay_s`` also delays any kind);
* ``truncate``: the normal status and headers with only the first half of the body bytes;
* ``malformed``: ``200`` with ``Content-Type: application/json`` and an HTML error page;
* ``empty``: ``200`` with an empty body;
* ``ratelimit_text``: ``200`` ``text/plain`` ``Rate limit exceeded``;
* ``reset``: the connection is reset (closed without any response).

Hostile upstreams (each a response of its own, streamed, so the stub holds none of it):

* ``echo_key``: ``200`` ``text/plain`` quoting the request's key (``x-cg-demo-api-key``,
  ``Authorization`` or a ``*key*`` query parameter), as a broken proxy or portal might;
* ``redirect``: ``redirect_status`` (302) to ``location`` + the request's path and query, e.g.
  another stub on ``http://127.0.0.2:P``, whose request log then shows which headers arrived;
* ``gzip_bomb``: ``200`` ``Content-Encoding: gzip``, about 1 KB on the wire per MiB of zeros,
  ``size_bytes`` (1 GiB) once inflated;
* ``endless``: ``200`` with a chunked JSON-looking body that never ends;
* ``huge_json``: ``200`` ``application/json``, a valid array of ``items`` (1,000,000) coins of
  about 200 bytes each.

JSON form (``POST /_stub/faults`` or ``STUB_FAULTS``)::

    [{"path": "/v1/tickers", "kind": "429", "count": 2, "retry_after": 1},
     {"path": "/rss", "kind": "delay", "delay_s": 5}]

String form (``STUB_FAULTS`` or the CLI), faults separated by ``;``, each
``PATH:KIND[*COUNT][:key=value...]`` with ``COUNT`` an integer or ``always``::

    /v1/tickers:429*2:retry_after=1;/api/v3:503*3;/rss:delay:delay_s=5;/:reset*always
    /v1/tickers:429:retry_after=2:retry_after_date=true
    /api/v3:gzip_bomb:size_bytes=2147483648;/rss:endless

A ``location`` holds ``:`` characters, so a ``redirect`` needs the JSON form.
"""

from __future__ import annotations

import msgspec

ALWAYS = 1_000_000_000
HOSTILE_KINDS = frozenset({"echo_key", "redirect", "gzip_bomb", "endless", "huge_json"})
NAMED_KINDS = (
    frozenset({"delay", "truncate", "malformed", "empty", "ratelimit_text", "reset"})
    | HOSTILE_KINDS
)
MALFORMED_BODY = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>error page from an upstream proxy</p></body></html>"
)


class Fault(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One injected fault; see the module docstring."""

    kind: str
    path: str = "/"
    count: int = 1
    retry_after: int | None = None
    retry_after_date: bool = False
    delay_s: float = 0.0
    location: str = ""
    redirect_status: int = 302
    size_bytes: int = 1 << 30
    items: int = 1_000_000

    def __post_init__(self) -> None:
        if self.kind not in NAMED_KINDS and not is_error_status(self.kind):
            raise ValueError(
                f"unknown fault kind {self.kind!r}: use an HTTP status 400-599 or one of "
                f"{sorted(NAMED_KINDS)}"
            )
        if not self.path.startswith("/"):
            raise ValueError(f"fault path must start with '/', got {self.path!r}")
        if self.count < 0 or self.delay_s < 0 or (self.retry_after or 0) < 0:
            raise ValueError("fault count, delay_s and retry_after must not be negative")
        if self.kind == "redirect" and not (
            self.location.startswith(("http://", "https://")) and 300 <= self.redirect_status < 400
        ):
            raise ValueError("a redirect fault needs an http(s) location and a 3xx redirect_status")
        if self.size_bytes < 0 or self.items < 0:
            raise ValueError("fault size_bytes and items must not be negative")


def is_error_status(kind: str) -> bool:
    return kind.isdigit() and 400 <= int(kind) <= 599


# --------------------------------------------------------------------------- fault specs


def parse_faults(spec: str) -> list[Fault]:
    """Parse the JSON or the string form of a fault list; raise ``ValueError`` when bad."""
    spec = spec.strip()
    if not spec:
        return []
    try:
        if spec[0] in "[{":
            decoded = msgspec.json.decode(spec.encode(), type=list[Fault] | Fault)
            return decoded if isinstance(decoded, list) else [decoded]
        return [_parse_one(item) for item in spec.split(";") if item.strip()]
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"bad fault spec: {exc}") from None


def _parse_one(item: str) -> Fault:
    path, _, rest = item.strip().partition(":")
    kind_part, *options = rest.split(":")
    kind, _, count = kind_part.partition("*")
    fields: dict[str, str | int] = {"path": path, "kind": kind.strip()}
    if count:
        fields["count"] = ALWAYS if count.strip() == "always" else count.strip()
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"bad fault option {option!r} in {item!r}: expected key=value")
        fields[key.strip()] = value.strip()
    try:
        return msgspec.convert(fields, Fault, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad fault {item!r}: {exc}") from None
