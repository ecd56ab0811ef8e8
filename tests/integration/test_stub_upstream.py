"""The stub upstream: routes, paging, conditional GET, faults and control endpoints."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import aiohttp
import pytest

from cryptoetl.stub import FROZEN, Fault, ReplayMode, StubHandle, parse_faults, running_stub, serve
from cryptoetl.stub.faults import ALWAYS

TICKERS = b'[{"id": "btc-bitcoin", "symbol": "BTC"}]'
PAGE_1 = b'[{"id": "bitcoin"}, {"id": "ethereum"}]'
PAGE_2 = b'[{"id": "tether"}]'
FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
OTHER_FEED = b"<rss version='2.0'><channel><title>other</title></channel></rss>"
FEED_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z


def make_fixtures(root: Path) -> Path:
    for sub in ("coinpaprika", "coingecko", "rss"):
        (root / sub).mkdir(parents=True)
    (root / "coinpaprika" / "tickers.json").write_bytes(TICKERS)
    (root / "coingecko" / "markets_page_1.json").write_bytes(PAGE_1)
    (root / "coingecko" / "markets_page_2.json").write_bytes(PAGE_2)
    (root / "rss" / "feed.xml").write_bytes(FEED)
    os.utime(root / "rss" / "feed.xml", (FEED_MTIME, FEED_MTIME))
    (root / "rss" / "other.xml").write_bytes(OTHER_FEED)
    return root


@asynccontextmanager
async def stub_session(
    tmp_path: Path, faults: list[Fault] | str = "", mode: ReplayMode = FROZEN
) -> AsyncIterator[tuple[StubHandle, aiohttp.ClientSession]]:
    """The stub on our tiny fixtures, frozen unless asked: most tests compare exact bytes."""
    async with (
        running_stub(make_fixtures(tmp_path), faults=faults, mode=mode) as stub,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        yield stub, session


async def fetch(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url, **kwargs) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def post(session: aiohttp.ClientSession, url: str, data: str) -> tuple[int, Any]:
    async with session.post(url, data=data) as resp:
        return resp.status, await resp.json()


# --------------------------------------------------------------------------- routes


async def test_root_and_tickers(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        assert await fetch(session, stub.url("/")) == (200, ANY, b"ok")
        status, headers, body = await fetch(session, stub.url("/v1/tickers"))
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert body == TICKERS
    assert stub.base_url.startswith("http://127.0.0.1:")


async def test_missing_tickers_file_is_404(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        (tmp_path / "coinpaprika" / "tickers.json").unlink()
        status, _, body = await fetch(session, stub.url("/v1/tickers"))
    assert status == 404
    assert b"coinpaprika/tickers.json" in body


async def test_markets_paging(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        url = stub.url("/api/v3/coins/markets")
        default = await fetch(session, url, params={"vs_currency": "usd"})
        page1 = await fetch(session, url, params={"vs_currency": "usd", "page": "1"})
        page2 = await fetch(session, url, params={"page": "2"})
        page3 = await fetch(session, url, params={"page": "3"})
        bad = await fetch(session, url, params={"page": "zero"})
    assert default[2] == page1[2] == PAGE_1
    assert page2[2] == PAGE_2
    assert (page3[0], page3[2]) == (200, b"[]")
    assert page3[1]["content-type"] == "application/json"
    assert bad[0] == 400
    assert [r.query.get("page") for r in stub.requests] == [None, "1", "2", "3", "zero"]


async def test_rss_has_validators(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        status, headers, body = await fetch(session, stub.url("/rss"))
        other = await fetch(session, stub.url("/rss/other"))
        missing = await fetch(session, stub.url("/rss/nope"))
        traversal = await fetch(session, stub.url("/rss/..%2Fcoinpaprika%2Ftickers"))
    assert (status, body) == (200, FEED)
    assert headers["content-type"] == "application/rss+xml"
    assert headers["etag"].startswith('"')
    assert headers["etag"].endswith('"')
    assert parsedate_to_datetime(headers["last-modified"]).timestamp() == FEED_MTIME
    assert (other[0], other[2]) == (200, OTHER_FEED)
    assert other[1]["etag"] != headers["etag"]
    assert missing[0] == 404
    assert traversal[0] == 404


async def test_rss_conditional_get(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        url = stub.url("/rss")
        _, headers, _ = await fetch(session, url)
        etag, last_modified = headers["etag"], headers["last-modified"]
        by_etag = await fetch(session, url, headers={"If-None-Match": etag})
        by_weak_etag = await fetch(session, url, headers={"If-None-Match": f'"x", W/{etag}'})
        stale_etag = await fetch(session, url, headers={"If-None-Match": '"stale"'})
        by_date = await fetch(session, url, headers={"If-Modified-Since": last_modified})
        later = formatdate(FEED_MTIME + 3600, usegmt=True)
        by_later_date = await fetch(session, url, headers={"If-Modified-Since": later})
        earlier = formatdate(FEED_MTIME - 1, usegmt=True)
        by_old_date = await fetch(session, url, headers={"If-Modified-Since": earlier})
        both = {"If-None-Match": '"stale"', "If-Modified-Since": last_modified}
        etag_wins = await fetch(session, url, headers=both)
    assert (by_etag[0], by_etag[2]) == (304, b"")
    assert by_etag[1]["etag"] == etag
    assert by_weak_etag[0] == 304
    assert stale_etag[0] == 200
    assert by_date[0] == 304
    assert by_later_date[0] == 304
    assert (by_old_date[0], by_old_date[2]) == (200, FEED)
    assert etag_wins[0] == 200


async def test_rss_etag_follows_content(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        _, first, _ = await fetch(session, stub.url("/rss"))
        (tmp_path / "rss" / "feed.xml").write_bytes(FEED + b"\n")
        status, second, _ = await fetch(
            session, stub.url("/rss"), headers={"If-None-Match": first["etag"]}
        )
    assert status == 200
    assert second["etag"] != first["etag"]


async def test_request_log_keeps_auth_headers(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        await fetch(
            session,
            stub.url("/api/v3/coins/markets"),
            params={"page": "2"},
            headers={"x-cg-demo-api-key": "CG-key", "Authorization": "pk-123"},
        )
        await fetch(session, stub.url("/_stub/faults"))  # control calls are not logged
        _, _, raw = await fetch(session, stub.url("/_stub/requests"))
    [entry] = stub.requests
    assert entry.method == "GET"
    assert entry.path == "/api/v3/coins/markets"
    assert entry.query == {"page": "2"}
    assert entry.headers["x-cg-demo-api-key"] == "CG-key"
    assert entry.headers["Authorization"] == "pk-123"
    assert entry.fault is None
    [logged] = json.loads(raw)
    assert logged["headers"]["x-cg-demo-api-key"] == "CG-key"
    assert logged["path"] == "/api/v3/coins/markets"


# --------------------------------------------------------------------------- fault specs


def test_parse_string_form() -> None:
    spec = (
        "/v1/tickers:429*2:retry_after=1;/api/v3:503*3; /rss:delay:delay_s=0.5 ;"
        "/:reset*always;/v1/tickers:429:retry_after=2:retry_after_date=true"
    )
    assert parse_faults(spec) == [
        Fault(path="/v1/tickers", kind="429", count=2, retry_after=1),
        Fault(path="/api/v3", kind="503", count=3),
        Fault(path="/rss", kind="delay", delay_s=0.5),
        Fault(path="/", kind="reset", count=ALWAYS),
        Fault(path="/v1/tickers", kind="429", retry_after=2, retry_after_date=True),
    ]


def test_parse_json_form() -> None:
    spec = '[{"path": "/v1/tickers", "kind": "429", "count": 2, "retry_after": 1}]'
    assert parse_faults(spec) == [Fault(path="/v1/tickers", kind="429", count=2, retry_after=1)]
    assert parse_faults('{"kind": "truncate"}') == [Fault(kind="truncate")]
    assert parse_faults("  ") == []


@pytest.mark.parametrize(
    "spec",
    [
        "/v1/tickers:explode",
        "/v1/tickers:200",
        "v1/tickers:500",
        "/v1/tickers:500*many",
        "/v1/tickers:429:retry_after",
        "/v1/tickers:429:colour=red",
        '[{"kind": "500", "count": -1}]',
        '[{"kind": "500"',
    ],
)
def test_parse_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_faults(spec)


# --------------------------------------------------------------------------- fault behaviour


async def test_status_fault_applies_to_first_n_calls_on_prefix(tmp_path: Path) -> None:
    async with stub_session(tmp_path, "/api/v3:503*2") as (stub, session):
        markets = stub.url("/api/v3/coins/markets")
        other = await fetch(session, stub.url("/v1/tickers"))
        statuses = [(await fetch(session, markets))[0] for _ in range(3)]
    assert other[0] == 200
    assert statuses == [503, 503, 200]
    assert [r.fault for r in stub.requests] == [None, "503", "503", None]


async def test_faults_chain_in_order(tmp_path: Path) -> None:
    spec = "/v1/tickers:429;/v1/tickers:500;/v1/tickers:502"
    async with stub_session(tmp_path, spec) as (stub, session):
        statuses = [(await fetch(session, stub.url("/v1/tickers")))[0] for _ in range(4)]
    assert statuses == [429, 500, 502, 200]


async def test_429_retry_after_forms(tmp_path: Path) -> None:
    spec = "/v1/tickers:429:retry_after=7;/v1/tickers:429:retry_after=30:retry_after_date=true"
    async with stub_session(tmp_path, spec) as (stub, session):
        first = await fetch(session, stub.url("/v1/tickers"))
        before = time.time()
        second = await fetch(session, stub.url("/v1/tickers"))
    assert first[0] == 429
    assert first[1]["retry-after"] == "7"
    assert second[0] == 429
    when = parsedate_to_datetime(second[1]["retry-after"]).timestamp()
    assert before + 29 <= when <= before + 32


async def test_body_faults(tmp_path: Path) -> None:
    spec = "/v1/tickers:truncate;/v1/tickers:malformed;/v1/tickers:empty;/v1/tickers:ratelimit_text"
    async with stub_session(tmp_path, spec) as (stub, session):
        results = [await fetch(session, stub.url("/v1/tickers")) for _ in range(5)]
    truncated, malformed, empty, text, normal = results
    assert (truncated[0], truncated[2]) == (200, TICKERS[: len(TICKERS) // 2])
    assert truncated[1]["content-type"] == "application/json"
    assert (malformed[0], malformed[1]["content-type"]) == (200, "application/json")
    assert malformed[2].startswith(b"<html>")
    assert (empty[0], empty[2]) == (200, b"")
    assert (text[0], text[2]) == (200, b"Rate limit exceeded")
    assert text[1]["content-type"].startswith("text/plain")
    assert normal[2] == TICKERS


async def test_delay_fault(tmp_path: Path) -> None:
    async with stub_session(tmp_path, "/:delay:delay_s=0.4") as (stub, session):
        start = time.monotonic()
        first = await fetch(session, stub.url("/"))
        delayed = time.monotonic() - start
        stub.set_faults("/:delay:delay_s=0.6")
        with pytest.raises(asyncio.TimeoutError):
            await fetch(session, stub.url("/"), timeout=aiohttp.ClientTimeout(total=0.2))
    assert first[2] == b"ok"
    assert delayed >= 0.4


async def test_reset_fault_closes_without_response(tmp_path: Path) -> None:
    async with stub_session(tmp_path, "/v1/tickers:reset*always") as (stub, session):
        with pytest.raises(aiohttp.ClientConnectionError):
            await fetch(session, stub.url("/v1/tickers"))
        assert (await fetch(session, stub.url("/")))[0] == 200


async def test_faults_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_FAULTS", "/v1/tickers:502")
    async with running_stub(make_fixtures(tmp_path)) as stub, aiohttp.ClientSession() as s:
        assert (await fetch(s, stub.url("/v1/tickers")))[0] == 502
        assert (await fetch(s, stub.url("/v1/tickers")))[0] == 200


# --------------------------------------------------------------------------- control endpoints


async def test_fault_endpoints(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        faults_url = stub.url("/_stub/faults")
        status, body = await post(
            session, faults_url, '[{"path": "/v1/tickers", "kind": "500", "count": 2}]'
        )
        assert status == 200
        assert body == [
            {
                "kind": "500",
                "path": "/v1/tickers",
                "count": 2,
                "retry_after": None,
                "retry_after_date": False,
                "delay_s": 0.0,
                "location": "",
                "redirect_status": 302,
                "size_bytes": 1 << 30,
                "items": 1_000_000,
                "remaining": 2,
            }
        ]
        status, body = await post(session, f"{faults_url}?append=1", "/:429:retry_after=3")
        assert [f["kind"] for f in body] == ["500", "429"]
        assert (await fetch(session, stub.url("/v1/tickers")))[0] == 500
        _, _, raw = await fetch(session, faults_url)
        assert b'"remaining":1' in raw
        status, body = await post(session, faults_url, "/v1/tickers:nonsense")
        assert status == 400
        assert "nonsense" in body["error"]
        _, _, raw = await fetch(session, stub.url("/_stub/requests"))
        assert b'"fault":"500"' in raw
        status, _ = await post(session, stub.url("/_stub/reset"), "")
        assert status == 200
        assert stub.requests == []
        assert stub.state.faults == []
        assert (await fetch(session, stub.url("/v1/tickers")))[0] == 200


async def test_handle_helpers(tmp_path: Path) -> None:
    async with stub_session(tmp_path) as (stub, session):
        stub.set_faults([Fault(path="/v1/tickers", kind="503")])
        stub.add_fault(Fault(path="/v1/tickers", kind="504"))
        statuses = [(await fetch(session, stub.url("/v1/tickers")))[0] for _ in range(3)]
        assert statuses == [503, 504, 200]
        stub.reset()
        assert stub.requests == []


async def test_serve_until_cancelled_with_one_short_access_line_per_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cryptoetl.stub.access")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    task = asyncio.create_task(serve(port, make_fixtures(tmp_path), faults="/v1/tickers:503"))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    status, _, body = await fetch(session, f"http://127.0.0.1:{port}/")
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            else:
                pytest.fail("stub did not start")
            headers = {"x-cg-demo-api-key": "CG-stub-log-key-1", "User-Agent": "agent-x"}
            url = f"http://127.0.0.1:{port}/v1/tickers?quotes=USD&api_key=CG-stub-log-key-2"
            await fetch(session, url, headers=headers)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (status, body) == (200, b"ok")
    lines = [r for r in caplog.records if r.name == "cryptoetl.stub.access"]
    assert [r.getMessage().rsplit(" ", 2)[0] for r in lines] == [
        "GET / 200",
        "GET /v1/tickers?quotes=USD&api_key=*** 503 (fault 503)",
    ]
    assert [r.levelno for r in lines] == [logging.INFO, logging.ERROR]
    for record in lines:
        assert len(record.getMessage()) < 100
        text = str(record.__dict__)
        assert "agent-x" not in text  # no header dump
        assert "CG-stub-log-key" not in text


# --------------------------------------------------------------------------- hostile kinds


async def test_echo_key_quotes_the_key_it_received(tmp_path: Path) -> None:
    async with stub_session(tmp_path, "/api/v3:echo_key*always") as (stub, session):
        headers = {"x-cg-demo-api-key": "CG-echo-me"}
        status, head, body = await fetch(
            session, stub.url("/api/v3/coins/markets"), headers=headers
        )
    assert (status, head["content-type"]) == (200, "text/plain; charset=utf-8")
    assert b"CG-echo-me" in body


async def test_redirect_goes_to_location_with_path_and_query(tmp_path: Path) -> None:
    fault = Fault(path="/v1", kind="redirect", location="http://127.0.0.2:9/", redirect_status=307)
    async with stub_session(tmp_path, [fault]) as (stub, session):
        status, head, _ = await fetch(
            session, stub.url("/v1/tickers?quotes=USD"), allow_redirects=False
        )
    assert (status, head["location"]) == (307, "http://127.0.0.2:9/v1/tickers?quotes=USD")


@pytest.mark.parametrize(
    "spec",
    [
        '{"kind": "redirect"}',
        '{"kind": "redirect", "location": "ftp://x"}',
        '{"kind": "redirect", "location": "http://x", "redirect_status": 200}',
        '{"kind": "gzip_bomb", "size_bytes": -1}',
    ],
)
def test_bad_hostile_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_faults(spec)


async def test_gzip_bomb_is_a_valid_gzip_stream(tmp_path: Path) -> None:
    size = 3 * (1 << 20) + 123
    fault = Fault(path="/api/v3", kind="gzip_bomb", size_bytes=size)
    async with (
        stub_session(tmp_path, [fault]) as (stub, session),
        session.get(stub.url("/api/v3/coins/markets"), auto_decompress=False) as resp,
    ):
        wire = await resp.read()
        encoding = resp.headers["Content-Encoding"]
    assert encoding == "gzip"
    assert len(wire) < 8 * 1024  # about 1 KB per MiB
    assert gzip.decompress(wire) == bytes(size)


async def test_endless_body_never_ends(tmp_path: Path) -> None:
    async with (
        stub_session(tmp_path, "/rss:endless") as (stub, session),
        session.get(stub.url("/rss")) as resp,
    ):
        read = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            read += len(chunk)
            if read > 4 << 20:
                break
    assert read > 4 << 20  # and the stub let go when we closed


async def test_huge_json_is_a_valid_array_of_coins(tmp_path: Path) -> None:
    fault = Fault(path="/api/v3", kind="huge_json", items=2500)
    async with stub_session(tmp_path, [fault]) as (stub, session):
        _, _, body = await fetch(session, stub.url("/api/v3/coins/markets"))
    coins = json.loads(body)
    assert len(coins) == 2500
    assert coins[-1]["id"] == "coin-2499"
    assert 150 < len(body) / len(coins) < 250


def test_http_date_helper_sanity() -> None:
    # The stub formats Last-Modified like email.utils does for HTTP dates.
    stamp = datetime.fromtimestamp(FEED_MTIME, tz=UTC)
    assert format_datetime(stamp, usegmt=True) == formatdate(FEED_MTIME, usegmt=True)
