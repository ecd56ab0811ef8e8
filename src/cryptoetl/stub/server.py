"""Stub upstream: replays recorded files on loopback, with fault injection.

Live or frozen (:mod:`cryptoetl.stub.replay`): by default the fixtures are served *live*, moved
to the current time step (60 s unless ``--step``) with prices on a seeded walk (``--seed``), so a
demo shows moving prices, history and fresh timestamps (:mod:`cryptoetl.stub.live`). *Frozen*
(``--frozen``, ``STUB_FROZEN=1``, ``mode=FROZEN``) serves the recorded bytes exactly, for the
tests that compare with them. Faults apply alike in both.

Routes (the real upstream paths, so only base URLs change):

* ``GET /v1/tickers`` -> ``{fixtures}/coinpaprika/tickers.json``
  (``COINPAPRIKA_BASE_URL=http://127.0.0.1:P``)
* ``GET /api/v3/coins/markets?page=N`` -> ``{fixtures}/coingecko/markets_page_{N}.json``
  (``N`` defaults to 1; a page without a file answers ``[]``;
  ``COINGECKO_BASE_URL=http://127.0.0.1:P/api/v3``)
* ``GET /rss`` -> ``{fixtures}/rss/feed.xml``, ``GET /rss/{name}`` -> ``{fixtures}/rss/{name}.xml``
  (``application/rss+xml`` with ``ETag`` = hash of the bytes served and ``Last-Modified`` = file
  mtime, or live the newest date served when later; ``304`` when ``If-None-Match`` matches, or,
  without ``If-None-Match``, when ``If-Modified-Since`` is not older than ``Last-Modified``)
* ``GET /`` -> ``200 ok``

Control endpoints (never logged, never faulted):

* ``GET /_stub/requests`` -> the request log as JSON (method, path, query, headers, fault, time);
  header values, including ``Authorization`` and ``x-cg-demo-api-key``, are kept as sent.
* ``GET /_stub/faults`` -> the fault list with the ``remaining`` count of each.
* ``POST /_stub/faults`` -> replace the faults (``?append=1`` appends) with the body: one fault
  object, a JSON list of them, or the string form below. ``400`` on a bad spec.
* ``POST /_stub/reset`` -> clear faults and the request log.

Faults
------

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

Logging: one short access line per request (``cryptoetl.stub.access``: method, path with secret
query values redacted, status, fault, duration), at the level of its status (see
:func:`cryptoetl.logs.access_level`, so ``ACCESS_LOG`` applies); never request headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from cryptoetl.logs import access_level
from cryptoetl.redaction import redact_url
from cryptoetl.stub.replay import ReplayMode, replay_mode

logger = logging.getLogger("cryptoetl.stub")
access_logger = logging.getLogger("cryptoetl.stub.access")

ALWAYS = 1_000_000_000
HOSTILE_KINDS = frozenset({"echo_key", "redirect", "gzip_bomb", "endless", "huge_json"})
NAMED_KINDS = (
    frozenset({"delay", "truncate", "malformed", "empty", "ratelimit_text", "reset"})
    | HOSTILE_KINDS
)
CONTROL_PREFIX = "/_stub/"
MALFORMED_BODY = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>error page from an upstream proxy</p></body></html>"
)
RSS_CONTENT_TYPE = "application/rss+xml"
FAULT_KEY = web.RequestKey("stub_fault", str)
STREAM_CHUNK_BYTES = 64 * 1024
MIB = 1 << 20


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
        if self.kind not in NAMED_KINDS and not _is_error_status(self.kind):
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


class RequestLogEntry(msgspec.Struct, frozen=True):
    """One request the stub received (control endpoints excluded)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    fault: str | None
    time: float


def _is_error_status(kind: str) -> bool:
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


# --------------------------------------------------------------------------- state


@dataclass
class _ActiveFault:
    fault: Fault
    remaining: int


@dataclass
class StubState:
    """Faults and the request log of one stub app (shared by its handlers and tests)."""

    fixtures_dir: Path
    mode: ReplayMode
    faults: list[_ActiveFault] = field(default_factory=list)
    requests: list[RequestLogEntry] = field(default_factory=list)

    def set_faults(self, faults: Sequence[Fault] | str, *, append: bool = False) -> None:
        parsed = parse_faults(faults) if isinstance(faults, str) else list(faults)
        active = [_ActiveFault(f, f.count) for f in parsed]
        self.faults = [*self.faults, *active] if append else active

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()

    def take_fault(self, path: str) -> Fault | None:
        for active in self.faults:
            if active.remaining > 0 and path.startswith(active.fault.path):
                active.remaining -= 1
                return active.fault
        return None

    def faults_view(self) -> list[dict[str, object]]:
        return [{**msgspec.structs.asdict(a.fault), "remaining": a.remaining} for a in self.faults]


STATE_KEY = web.AppKey("stub_state", StubState)


# --------------------------------------------------------------------------- fault middleware


@web.middleware
async def _fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    fault = state.take_fault(request.path)
    state.requests.append(
        RequestLogEntry(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            fault=fault.kind if fault else None,
            time=time.time(),
        )
    )
    if fault is None:
        return await handler(request)
    request[FAULT_KEY] = fault.kind
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    return await _apply_fault(fault, request, handler)


async def _apply_fault(fault: Fault, request: web.Request, handler: Handler) -> web.StreamResponse:
    kind = fault.kind
    if _is_error_status(kind):
        return _error_response(fault)
    if kind == "reset":
        _reset_connection(request)
        return web.Response(status=500)  # never reaches the client: the transport is gone
    if kind == "malformed":
        return web.Response(body=MALFORMED_BODY, content_type="application/json")
    if kind == "ratelimit_text":
        return web.Response(text="Rate limit exceeded", content_type="text/plain")
    if kind in HOSTILE_KINDS:
        return await _hostile_response(fault, request)
    response = await handler(request)
    if kind in ("truncate", "empty") and isinstance(response, web.Response):
        body = response.body if isinstance(response.body, bytes) else b""
        return _with_body(response, body[: len(body) // 2] if kind == "truncate" else b"")
    return response  # "delay" (already waited)


def _error_response(fault: Fault) -> web.Response:
    status = int(fault.kind)
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        if fault.retry_after_date:
            headers["Retry-After"] = formatdate(
                math.ceil(time.time() + fault.retry_after), usegmt=True
            )
        else:
            headers["Retry-After"] = str(fault.retry_after)
    body = msgspec.json.encode({"error": f"injected fault: HTTP {status}"})
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


# --------------------------------------------------------------------------- hostile upstreams


async def _hostile_response(fault: Fault, request: web.Request) -> web.StreamResponse:
    if fault.kind == "echo_key":
        return web.Response(text=f"Invalid API key {_sent_key(request)}; check your plan.")
    if fault.kind == "redirect":
        location = fault.location.rstrip("/") + request.path_qs
        return web.Response(status=fault.redirect_status, headers={"Location": location})
    if fault.kind == "gzip_bomb":
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return await _stream(request, _gzip_bomb(fault.size_bytes), headers)
    if fault.kind == "endless":
        return await _stream(request, _endless(), {"Content-Type": "application/json"})
    return await _stream(request, _huge_json(fault.items), {"Content-Type": "application/json"})


def _sent_key(request: web.Request) -> str:
    for name in ("x-cg-demo-api-key", "Authorization"):
        if value := request.headers.get(name):
            return value
    return next((v for k, v in request.query.items() if "key" in k.lower()), "(none)")


async def _stream(
    request: web.Request, chunks: Iterator[bytes], headers: dict[str, str]
) -> web.StreamResponse:
    """Send ``chunks`` as a chunked body until they end or the client goes away."""
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped reading (that is the point) and closed the connection
    return response


def _gzip_bomb(size_bytes: int) -> Iterator[bytes]:
    """A gzip stream of ``size_bytes`` zeros: one MiB block, compressed once, repeated.

    A full flush ends each compressed block on a byte boundary with no back-reference, so the
    same bytes can follow themselves; the trailer's CRC is only computed if someone reads that
    far.
    """
    zeros = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip header, no name, no time
    blocks, rest = divmod(size_bytes, MIB)
    for _ in range(blocks):
        yield block
    last = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    yield last.compress(bytes(rest)) + last.flush()
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    yield struct.pack("<II", zlib.crc32(bytes(rest), crc), size_bytes & 0xFFFFFFFF)


def _endless() -> Iterator[bytes]:
    item = b'{"id":"endless","symbol":"END","name":"Endless"},'
    chunk = item * (STREAM_CHUNK_BYTES // len(item))
    yield b"["
    while True:
        yield chunk


def _huge_json(items: int) -> Iterator[bytes]:
    per_chunk = 1000
    yield b"["
    for start in range(0, items, per_chunk):
        coins = (
            f'{{"id":"coin-{n}","symbol":"C{n}","name":"Coin number {n}","current_price":1.5,'
            f'"market_cap":{n * 1000},"market_cap_rank":{n + 1},"total_volume":12345.0,'
            f'"price_change_percentage_24h":0.5,"last_updated":"2024-11-05T12:00:00.000Z"}}'
            for n in range(start, min(items, start + per_chunk))
        )
        yield (b"," if start else b"") + ",".join(coins).encode()
    yield b"]"


def _with_body(response: web.Response, body: bytes) -> web.Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return web.Response(status=response.status, body=body, headers=headers)


def _reset_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:  # SO_LINGER 0: close() sends a TCP RST instead of a FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# --------------------------------------------------------------------------- upstream routes


async def _read(path: Path) -> bytes | None:
    try:
        return await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return None


def _not_found(what: str) -> web.Response:
    body = msgspec.json.encode({"error": f"no fixture {what}"})
    return web.Response(status=404, body=body, content_type="application/json")


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _tickers(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await _read(state.fixtures_dir / "coinpaprika" / "tickers.json")
    if body is None:
        return _not_found("coinpaprika/tickers.json")
    return web.Response(body=state.mode.tickers(body), content_type="application/json")


async def _markets(request: web.Request) -> web.Response:
    raw = request.query.get("page", "1")
    if not raw.isdigit() or int(raw) < 1:
        error = msgspec.json.encode({"error": f"invalid page {raw!r}"})
        return web.Response(status=400, body=error, content_type="application/json")
    state = request.app[STATE_KEY]
    body = await _read(state.fixtures_dir / "coingecko" / f"markets_page_{int(raw)}.json")
    page = b"[]" if body is None else state.mode.markets(body)
    return web.Response(body=page, content_type="application/json")


async def _rss(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "feed")
    state = request.app[STATE_KEY]
    path = state.fixtures_dir / "rss" / f"{name}.xml"
    recorded = await _read(path)
    if recorded is None:
        return _not_found(f"rss/{name}.xml")
    body, last_modified = state.mode.feed(recorded, path.stat().st_mtime)
    headers = {
        "ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"',
        "Last-Modified": formatdate(last_modified, usegmt=True),
    }
    if _not_modified(request, headers["ETag"], last_modified):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers, content_type=RSS_CONTENT_TYPE)


def _not_modified(request: web.Request, etag: str, last_modified: int) -> bool:
    """RFC 9110: ``If-None-Match`` wins; otherwise ``If-Modified-Since`` is compared."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return since >= last_modified


# --------------------------------------------------------------------------- control routes


async def _get_requests(request: web.Request) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(request.app[STATE_KEY].requests),
        content_type="application/json",
    )


async def _get_faults(request: web.Request) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(request.app[STATE_KEY].faults_view()),
        content_type="application/json",
    )


async def _post_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    append = request.query.get("append", "") in ("1", "true", "yes")
    try:
        state.set_faults(await request.text(), append=append)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return await _get_faults(request)


async def _post_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"ok": True})


# --------------------------------------------------------------------------- app and runners


def build_app(
    fixtures_dir: Path,
    faults: Sequence[Fault] | str | None = None,
    mode: ReplayMode | None = None,
) -> web.Application:
    """The stub app; ``faults=None`` reads ``STUB_FAULTS``, ``mode=None`` the replay mode's
    variables (:func:`cryptoetl.stub.replay.replay_mode`: live unless ``STUB_FROZEN=1``)."""
    state = StubState(fixtures_dir=Path(fixtures_dir), mode=replay_mode() if mode is None else mode)
    state.set_faults(os.environ.get("STUB_FAULTS", "") if faults is None else faults)
    app = web.Application(middlewares=[_fault_middleware])
    app[STATE_KEY] = state
    app.router.add_get("/", _root)
    app.router.add_get("/v1/tickers", _tickers)
    app.router.add_get("/api/v3/coins/markets", _markets)
    app.router.add_get("/rss", _rss)
    app.router.add_get("/rss/{name:[A-Za-z0-9_-]+}", _rss)
    app.router.add_get("/_stub/requests", _get_requests)
    app.router.add_get("/_stub/faults", _get_faults)
    app.router.add_post("/_stub/faults", _post_faults)
    app.router.add_post("/_stub/reset", _post_reset)
    return app


@dataclass
class StubHandle:
    """A running stub: its base URL, its faults and its request log."""

    base_url: str
    state: StubState

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def set_faults(self, faults: Sequence[Fault] | str, *, append: bool = False) -> None:
        self.state.set_faults(faults, append=append)

    def add_fault(self, fault: Fault) -> None:
        self.state.set_faults([fault], append=True)

    @property
    def requests(self) -> list[RequestLogEntry]:
        return list(self.state.requests)

    def reset(self) -> None:
        self.state.reset()


class StubAccessLogger(AbstractAccessLogger):
    """One short line per request, at the level of its status; never any header."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        fault = request.get(FAULT_KEY)
        path = redact_url(request.path_qs)
        duration_ms = round(time * 1000, 1)
        self.logger.log(
            access_level(response.status),
            "%s %s %d%s %.1f ms",
            request.method,
            path,
            response.status,
            f" (fault {fault})" if fault else "",
            duration_ms,
            extra={
                "event": "stub_request",
                "method": request.method,
                "path": path,
                "status": response.status,
                "fault": fault,
                "duration_ms": duration_ms,
            },
        )


async def _start(
    app: web.Application, host: str, port: int, *, access_log: bool
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        app,
        access_log=access_logger if access_log else None,
        access_log_class=StubAccessLogger,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


@asynccontextmanager
async def running_stub(
    fixtures_dir: Path,
    port: int = 0,
    *,
    faults: Sequence[Fault] | str | None = None,
    host: str = "127.0.0.1",
    mode: ReplayMode | None = None,
) -> AsyncIterator[StubHandle]:
    """Run the stub on ``host:port`` (0 = a free port) for the duration of the block."""
    app = build_app(fixtures_dir, faults=faults, mode=mode)
    runner, bound = await _start(app, host, port, access_log=False)
    try:
        yield StubHandle(base_url=f"http://{host}:{bound}", state=app[STATE_KEY])
    finally:
        await runner.cleanup()


async def serve(
    port: int,
    fixtures_dir: Path,
    host: str = "127.0.0.1",
    faults: Sequence[Fault] | str | None = None,
    mode: ReplayMode | None = None,
) -> None:
    """Serve the stub until cancelled (``cryptoetl stub-upstream --port P --fixtures DIR``)."""
    app = build_app(fixtures_dir, faults=faults, mode=mode)
    runner, bound = await _start(app, host, port, access_log=True)
    replay = app[STATE_KEY].mode.describe()
    logger.info(
        "stub upstream listening on http://%s:%d (fixtures %s, %s)",
        host,
        bound,
        fixtures_dir,
        replay,
        extra={
            "event": "stub_started",
            "port": bound,
            "fixtures": str(fixtures_dir),
            "replay": replay,
        },
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
