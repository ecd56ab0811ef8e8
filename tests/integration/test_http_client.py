"""HttpClient against the stub upstream on loopback: retries, waits, budgets, secrets."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from cryptoetl.config import Settings, load_settings
from cryptoetl.sources.http import HttpClient, HttpResponse, UpstreamError
from cryptoetl.stub import FROZEN, Fault, StubHandle, running_stub

TICKERS = b'[{"id": "btc-bitcoin", "symbol": "BTC", "quotes": {"USD": {"price": 1.0}}}]'
SECRET = "CG-very-secret-key-123"
FAST_BACKOFF = 0.02


def make_fixtures(root: Path) -> Path:
    (root / "coinpaprika").mkdir(parents=True)
    (root / "coinpaprika" / "tickers.json").write_bytes(TICKERS)
    (root / "rss").mkdir()
    (root / "rss" / "feed.xml").write_bytes(b"<rss version='2.0'><channel></channel></rss>")
    return root


def settings(**env: str) -> Settings:
    base = {"HTTP_MAX_WAIT_S": "5", "HTTP_MAX_ATTEMPTS": "4", "HTTP_TIMEOUT_S": "2"}
    return load_settings({**base, **env})


@asynccontextmanager
async def stub_and_client(
    tmp_path: Path, faults: list[Fault] | str = "", **env: str
) -> AsyncIterator[tuple[StubHandle, HttpClient]]:
    async with (
        running_stub(make_fixtures(tmp_path), faults=faults, mode=FROZEN) as stub,
        HttpClient(settings(**env), backoff_initial_s=FAST_BACKOFF) as http,
    ):
        yield stub, http


def retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "http_retry"]


async def test_plain_get(tmp_path: Path) -> None:
    async with stub_and_client(tmp_path) as (stub, http):
        response = await http.get(stub.url("/v1/tickers"), params={"quotes": "USD"})
    assert isinstance(response, HttpResponse)
    assert response.status == 200
    assert response.body == TICKERS
    assert response.headers["content-type"] == "application/json"
    assert response.url == f"{stub.base_url}/v1/tickers?quotes=USD"
    assert stub.requests[0].query == {"quotes": "USD"}


async def test_429_with_retry_after_seconds_waits_then_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cryptoetl.http")
    fault = Fault(path="/v1/tickers", kind="429", retry_after=1)
    async with stub_and_client(tmp_path, [fault]) as (stub, http):
        start = time.monotonic()
        response = await http.get(stub.url("/v1/tickers"))
        waited = time.monotonic() - start
    assert response.status == 200
    assert waited >= 1.0
    assert [r.fault for r in stub.requests] == ["429", None]
    [record] = retry_records(caplog)
    assert record.attempt == 1  # type: ignore[attr-defined]
    assert record.wait_s >= 1.0  # type: ignore[attr-defined]
    assert "429" in record.reason  # type: ignore[attr-defined]
    assert record.url == stub.url("/v1/tickers")  # type: ignore[attr-defined]


async def test_429_with_retry_after_http_date_waits_then_succeeds(tmp_path: Path) -> None:
    fault = Fault(path="/v1/tickers", kind="429", retry_after=1, retry_after_date=True)
    async with stub_and_client(tmp_path, [fault]) as (stub, http):
        start = time.monotonic()
        response = await http.get(stub.url("/v1/tickers"))
        waited = time.monotonic() - start
    assert response.status == 200
    # The date has one-second resolution (the stub rounds up): at least ~the asked second.
    assert waited >= 0.9
    assert len(stub.requests) == 2


async def test_500_twice_then_success(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "cryptoetl.http")
    async with stub_and_client(tmp_path, "/v1/tickers:500*2") as (stub, http):
        response = await http.get(stub.url("/v1/tickers"))
    assert response.body == TICKERS
    assert [r.fault for r in stub.requests] == ["500", "500", None]
    assert [r.attempt for r in retry_records(caplog)] == [1, 2]  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", ["502", "503", "504", "520"])
async def test_other_5xx_are_retried(tmp_path: Path, status: str) -> None:
    async with stub_and_client(tmp_path, f"/v1/tickers:{status}") as (stub, http):
        response = await http.get(stub.url("/v1/tickers"))
    assert response.status == 200
    assert len(stub.requests) == 2


@pytest.mark.parametrize(
    ("status", "phrase"),
    [("401", "Unauthorized"), ("400", "Bad Request"), ("403", "Forbidden"), ("422", "")],
)
async def test_4xx_fails_at_once_without_retry(tmp_path: Path, status: str, phrase: str) -> None:
    async with stub_and_client(tmp_path, f"/v1/tickers:{status}*always") as (stub, http):
        with pytest.raises(UpstreamError) as caught:
            await http.get(stub.url("/v1/tickers"))
    message = str(caught.value)
    assert message.startswith(f"GET {stub.url('/v1/tickers')}: HTTP {status} {phrase}")
    assert "injected fault" in message  # the body excerpt
    assert len(stub.requests) == 1


async def test_404_for_missing_route_is_final(tmp_path: Path) -> None:
    async with stub_and_client(tmp_path) as (stub, http):
        with pytest.raises(UpstreamError, match=r"HTTP 404 Not Found"):
            await http.get(stub.url("/no/such/path"))
    assert len(stub.requests) == 1


async def test_timeout_then_success(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "cryptoetl.http")
    fault = Fault(path="/v1/tickers", kind="delay", delay_s=0.8)
    async with stub_and_client(tmp_path, [fault], HTTP_TIMEOUT_S="0.3") as (stub, http):
        response = await http.get(stub.url("/v1/tickers"))
    assert response.body == TICKERS
    assert len(stub.requests) == 2
    [record] = retry_records(caplog)
    assert "timeout" in record.reason  # type: ignore[attr-defined]


async def test_connection_reset_then_success(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cryptoetl.http")
    # aiohttp itself re-sends an idempotent request once after a disconnect, so two resets
    # are needed to reach our own retry policy.
    async with stub_and_client(tmp_path, "/v1/tickers:reset*2") as (stub, http):
        response = await http.get(stub.url("/v1/tickers"))
    assert response.body == TICKERS
    assert [r.fault for r in stub.requests] == ["reset", "reset", None]
    assert len(retry_records(caplog)) == 1


async def test_truncated_body_is_returned_as_is(tmp_path: Path) -> None:
    async with stub_and_client(tmp_path, "/v1/tickers:truncate") as (stub, http):
        response = await http.get(stub.url("/v1/tickers"))
    assert response.status == 200
    assert response.body == TICKERS[: len(TICKERS) // 2]


@pytest.mark.parametrize(
    ("kind", "body"), [("empty", b""), ("ratelimit_text", b"Rate limit exceeded")]
)
async def test_bad_bodies_with_200_are_returned(tmp_path: Path, kind: str, body: bytes) -> None:
    async with stub_and_client(tmp_path, f"/v1/tickers:{kind}") as (stub, http):
        response = await http.get(stub.url("/v1/tickers"))
    assert (response.status, response.body) == (200, body)


async def test_malformed_body_is_returned(tmp_path: Path) -> None:
    async with stub_and_client(tmp_path, "/v1/tickers:malformed") as (stub, http):
        response = await http.get(stub.url("/v1/tickers"))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.body.startswith(b"<html>")


async def test_attempts_cap_gives_up_with_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cryptoetl.http")
    env = {"HTTP_MAX_ATTEMPTS": "3"}
    async with stub_and_client(tmp_path, "/v1/tickers:503*always", **env) as (stub, http):
        with pytest.raises(UpstreamError) as caught:
            await http.get(stub.url("/v1/tickers"))
    message = str(caught.value)
    assert "gave up after 3 attempts" in message
    assert "HTTP 503 Service Unavailable" in message
    assert len(stub.requests) == 3
    assert len(retry_records(caplog)) == 2


async def test_retry_after_beyond_budget_fails_at_once(tmp_path: Path) -> None:
    fault = Fault(path="/v1/tickers", kind="429", retry_after=60, count=5)
    async with stub_and_client(tmp_path, [fault], HTTP_MAX_WAIT_S="3") as (stub, http):
        start = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await http.get(stub.url("/v1/tickers"))
        elapsed = time.monotonic() - start
    message = str(caught.value)
    assert "HTTP 429 Too Many Requests" in message
    assert "Retry-After asks to wait 60 s" in message
    assert "HTTP_MAX_WAIT_S=3" in message
    assert len(stub.requests) == 1
    assert elapsed < 3.0  # it did not sleep the budget away


async def test_budget_exhausted_by_retry_afters(tmp_path: Path) -> None:
    fault = Fault(path="/v1/tickers", kind="503", retry_after=1, count=10)
    env = {"HTTP_MAX_WAIT_S": "1.5", "HTTP_MAX_ATTEMPTS": "10"}
    async with stub_and_client(tmp_path, [fault], **env) as (stub, http):
        with pytest.raises(UpstreamError, match=r"only 0\.5 s of the retry budget"):
            await http.get(stub.url("/v1/tickers"))
    assert len(stub.requests) == 2


async def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"HTTP_MAX_ATTEMPTS": "2"}
    async with stub_and_client(tmp_path, **env) as (_, http):
        with pytest.raises(UpstreamError, match=r"gave up after 2 attempts.*Connect"):
            await http.get(f"http://127.0.0.1:{port}/v1/tickers")


async def test_rate_limit_spaces_requests(tmp_path: Path) -> None:
    async with (
        running_stub(make_fixtures(tmp_path)) as stub,
        HttpClient(settings(RATE_LIMIT_RPM="127.0.0.1=60"), burst=1) as http,
    ):
        start = time.monotonic()
        for _ in range(3):
            await http.get(stub.url("/"))
        elapsed = time.monotonic() - start
    assert elapsed >= 1.9
    gaps = [b.time - a.time for a, b in zip(stub.requests, stub.requests[1:], strict=False)]
    assert all(gap >= 0.9 for gap in gaps)


async def test_default_rate_limit_is_generous_for_loopback(tmp_path: Path) -> None:
    async with stub_and_client(tmp_path) as (stub, http):
        for _ in range(5):
            await http.get(stub.url("/"))
    assert len(stub.requests) == 5


async def test_conditional_get_returns_accepted_304(tmp_path: Path) -> None:
    async with stub_and_client(tmp_path) as (stub, http):
        first = await http.get(stub.url("/rss"))
        etag = first.headers["etag"]
        second = await http.get(
            stub.url("/rss"),
            headers={"If-None-Match": etag},
            accept_statuses=frozenset({200, 304}),
        )
        with pytest.raises(UpstreamError, match="HTTP 304"):
            await http.get(stub.url("/rss"), headers={"If-None-Match": etag})
    assert first.status == 200
    assert second.status == 304
    assert second.body == b""


async def test_accepted_error_status_is_returned_not_retried(tmp_path: Path) -> None:
    async with stub_and_client(tmp_path, "/v1/tickers:503") as (stub, http):
        response = await http.get(stub.url("/v1/tickers"), accept_statuses=frozenset({200, 503}))
    assert response.status == 503
    assert len(stub.requests) == 1


# --------------------------------------------------------------------------- secrets


async def _echo_secrets(request: web.Request) -> web.Response:
    """A rude upstream that echoes the credentials it received into its error body."""
    echoed = " ".join(f"{k}={v}" for k, v in request.headers.items())
    echoed += " " + " ".join(f"{k}={v}" for k, v in request.query.items())
    status = int(request.query.get("status", "401"))
    return web.Response(status=status, text=f"denied: {echoed}")


@asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _echo_secrets)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_secret_header_never_in_error_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with echo_server() as base, HttpClient(settings()) as http:
        with pytest.raises(UpstreamError) as caught:
            await http.get(f"{base}/coins", headers={"x-cg-demo-api-key": SECRET})
    message = str(caught.value)
    assert "HTTP 401 Unauthorized: denied:" in message
    assert "x-cg-demo-api-key=***" in message
    assert SECRET not in message
    assert SECRET not in caplog.text


async def test_secrets_never_in_retry_logs_or_final_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"HTTP_MAX_ATTEMPTS": "2", "COINPAPRIKA_API_KEY": "paprika-key-777"}
    async with (
        echo_server() as base,
        HttpClient(settings(**env), backoff_initial_s=FAST_BACKOFF) as http,
    ):
        with pytest.raises(UpstreamError) as caught:
            await http.get(
                f"{base}/tickers",
                params={"status": "503", "x_cg_demo_api_key": SECRET},
                headers={"Authorization": "paprika-key-777"},
            )
    message = str(caught.value)
    assert "gave up after 2 attempts" in message
    assert "x_cg_demo_api_key=***" in message  # in the URL and in the echoed body
    for secret in (SECRET, "paprika-key-777"):
        assert secret not in message
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in str(record.__dict__)
    assert len(retry_records(caplog)) == 1


async def test_get_outside_context_is_an_error() -> None:
    http = HttpClient(settings())
    with pytest.raises(RuntimeError, match="async with"):
        await http.get("http://127.0.0.1:9/")


# --------------------------------------------------------------------------- hostile upstreams


async def test_body_limit_is_exact(tmp_path: Path) -> None:
    body = b"[" + b" " * 2046 + b"]"  # 2048 bytes
    async with stub_and_client(tmp_path, HTTP_MAX_BODY_BYTES="2048") as (stub, http):
        (stub.state.fixtures_dir / "coinpaprika" / "tickers.json").write_bytes(body)
        assert (await http.get(stub.url("/v1/tickers"))).body == body
        (stub.state.fixtures_dir / "coinpaprika" / "tickers.json").write_bytes(body + b" ")
        with pytest.raises(UpstreamError, match=r"exceeds HTTP_MAX_BODY_BYTES=2048 bytes"):
            await http.get(stub.url("/v1/tickers"))


async def test_redirect_loop_stops_after_ten_hops(tmp_path: Path) -> None:
    async with stub_and_client(tmp_path) as (stub, http):
        stub.set_faults([Fault(path="/v1", kind="redirect", location=stub.base_url, count=100)])
        with pytest.raises(UpstreamError, match=r"more than 10 redirects \(the last to http://"):
            await http.get(stub.url("/v1/tickers"))
    assert len(stub.requests) == 11


async def _hostile(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name == "ftp":
        return web.Response(status=301, headers={"Location": "ftp://files.example/x"})
    if name == "userinfo":
        target = f"http://intruder:pw@{request.host}/arrived"
        return web.Response(status=302, headers={"Location": target})
    if name == "big-error":
        return web.Response(status=400, text="E" * 1_000_000)
    return web.json_response({"authorization": request.headers.get("Authorization")})


@asynccontextmanager
async def hostile_server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{name}", _hostile)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_redirect_to_a_non_http_location_fails() -> None:
    async with hostile_server() as base, HttpClient(settings()) as http:
        with pytest.raises(UpstreamError, match=r"HTTP 301 redirect to an unusable Location"):
            await http.get(f"{base}/ftp")


async def test_credentials_in_a_location_are_never_used() -> None:
    async with hostile_server() as base, HttpClient(settings()) as http:
        response = await http.get(f"{base}/userinfo")
    assert json.loads(response.body) == {"authorization": None}
    assert response.url == f"{base}/arrived"


async def test_url_credentials_travel_as_authorization_and_stay_home(tmp_path: Path) -> None:
    async with (
        running_stub(make_fixtures(tmp_path / "a"), mode=FROZEN) as stub,
        running_stub(make_fixtures(tmp_path / "b"), host="127.0.0.2", mode=FROZEN) as other,
        HttpClient(settings()) as http,
    ):
        stub.set_faults([Fault(path="/v1", kind="redirect", location=other.base_url)])
        host = stub.base_url.removeprefix("http://")
        response = await http.get(f"http://reader:{SECRET}@{host}/v1/tickers")
    assert response.body == TICKERS
    assert stub.requests[0].headers["Authorization"].startswith("Basic ")
    assert "Authorization" not in other.requests[0].headers
    assert response.url == f"{other.base_url}/v1/tickers"


async def test_a_huge_error_body_is_quoted_in_200_characters() -> None:
    async with hostile_server() as base, HttpClient(settings()) as http:
        with pytest.raises(UpstreamError) as caught:
            await http.get(f"{base}/big-error")
    message = str(caught.value)
    assert message.startswith(f"GET {base}/big-error: HTTP 400 Bad Request: EEEE")
    assert len(message) < len(base) + 250
    assert message.endswith("…")
