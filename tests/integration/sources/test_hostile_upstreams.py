"""Issue 14, items 1-4: hostile upstreams on loopback, each fetched by a process of its own.

Every test starts the stub upstream (and, for redirects, a second one on 127.0.0.2) in this
process and runs the sources in a child (``fetch_child``), configured from its environment and
logging like the worker. From the child we get its peak RSS and wall time, its log lines, and per
source the error, warnings, last cursor, record metadata and raw keys. Each test asserts:

* bounded memory (peak RSS of the child) and time (a hang would hit the bound);
* the recorded reason (the error names the setting, or the redirect is logged);
* that no part of a sentinel secret (no run of 8 of its characters) appears in the logs, the
  errors, the warnings, the cursor or the stored keys and metadata;
* that the other sources, or the other feeds of the RSS source, still deliver.

The worker-level versions (runs.error, checkpoints and /runs through the new store) are left to
the end-to-end suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cryptoetl.redaction import PARTIAL_SECRET_CHARS
from cryptoetl.sources.base import SourceError
from cryptoetl.sources.market_api import decode_json_items
from cryptoetl.stub import Fault, StubHandle, running_stub

ROOT = Path(__file__).resolve().parents[3]
GECKO_KEY = "CG-h0stile5entinelKey4bcd123456"  # 31 characters, like the key
PAPRIKA_KEY = "paprika-sentinel-key-7f3e2a19c"
FEED_TOKEN = "feed-sentinel-token-5b7d9e1c"
FEED_USER_TOKEN = "feeduser-sentinel-3c8a1f"
FEED_PASSWORD = "feedpass-sentinel-9e2b7d"
SECRETS = (GECKO_KEY, PAPRIKA_KEY, FEED_TOKEN, FEED_USER_TOKEN, FEED_PASSWORD)
BODY_LIMIT = 8 * 1024 * 1024
# The child starts at about 43 MB (Python, aiohttp, msgspec, feedparser, structlog) and holds at
# most one body of BODY_LIMIT, twice while joining its chunks. Reading a hostile body whole would
# cost 200 MB to 2 GB; the address-space cap turns that into a MemoryError in the child.
PEAK_RSS_BOUND_MB = 100
# What the fetch itself allocates: a body of at most BODY_LIMIT, its chunks while joining them.
TRACED_PEAK_BOUND_MB = 3 * BODY_LIMIT / 1024**2
CHILD_ADDRESS_SPACE_BYTES = 3 * 1024**3
TIME_BOUND_S = 30.0


@dataclass
class ChildRun:
    stdout: str
    stderr: str
    result: dict[str, Any]

    def source(self, name: str) -> dict[str, Any]:
        outcome: dict[str, Any] = self.result["sources"][name]
        return outcome

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line.get("event") == event]


def fragments(secret: str) -> set[str]:
    width = PARTIAL_SECRET_CHARS
    return {secret[i : i + width] for i in range(len(secret) - width + 1)}


def assert_no_secret_part(run: ChildRun) -> None:
    """No 8 consecutive characters of any sentinel in logs, errors, warnings, cursors, keys."""
    text = run.stdout + run.stderr + json.dumps(run.result["sources"])
    for secret in SECRETS:
        leaked = sorted(f for f in fragments(secret) if f in text)
        assert not leaked, f"parts of {secret[:4]}… leaked: {leaked}"


def assert_bounded(run: ChildRun) -> None:
    figures = run.result
    print(  # shown with -s, for the record
        f"fetching process: peak RSS {figures['peak_rss_mb']:.1f} MB, "
        f"Python heap peak while fetching {figures['traced_peak_mb']:.1f} MB, "
        f"{figures['elapsed_s']:.2f} s"
    )
    assert figures["peak_rss_mb"] < PEAK_RSS_BOUND_MB
    assert figures["traced_peak_mb"] < TRACED_PEAK_BOUND_MB
    assert figures["elapsed_s"] < TIME_BOUND_S


def base_env(stub: StubHandle, **overrides: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "HTTP_MAX_ATTEMPTS": "2",
        "HTTP_MAX_WAIT_S": "2",
        "HTTP_TIMEOUT_S": "20",
        "HTTP_MAX_BODY_BYTES": str(BODY_LIMIT),
        "RATE_LIMIT_RPM": "127.0.0.1=0,127.0.0.2=0",
        "COINGECKO_BASE_URL": stub.url("/api/v3"),
        "COINGECKO_API_KEY": GECKO_KEY,
        "COINPAPRIKA_BASE_URL": stub.base_url,
        "COINPAPRIKA_API_KEY": PAPRIKA_KEY,
        "RSS_FEED_URLS": stub.url("/rss"),
        "CHILD_MAX_AS_BYTES": str(CHILD_ADDRESS_SPACE_BYTES),
        **overrides,
    }


async def run_child(env: dict[str, str], *sources: str) -> ChildRun:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.sources.fetch_child",
        *sources,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIME_BOUND_S * 2)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail("the fetching process hung")
    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == 0, stderr[-3000:]
    [result_line] = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return ChildRun(stdout, stderr, json.loads(result_line.removeprefix("RESULT ")))


@pytest.fixture
def fixtures(tmp_path: Path) -> Path:
    """Our fixtures, plus a private feed that quotes its own URL, token included."""
    root = tmp_path / "fixtures"
    shutil.copytree(ROOT / "fixtures", root)
    return root


@pytest.fixture
async def stub(fixtures: Path) -> AsyncIterator[StubHandle]:
    async with running_stub(fixtures) as handle:
        yield handle


# --------------------------------------------------------------------------- item 1


async def test_200_text_body_echoing_the_key_is_refused_and_never_shown(stub: StubHandle) -> None:
    stub.set_faults([Fault(path="/api/v3", kind="echo_key", count=1_000)])
    run = await run_child(base_env(stub), "coingecko", "coinpaprika")
    gecko = run.source("coingecko")
    assert gecko["error"] is not None
    assert "HTTP 200 OK: the response body contains the credential sent in the" in gecko["error"]
    assert "x-cg-demo-api-key header; body refused" in gecko["error"]
    assert stub.requests[0].headers["x-cg-demo-api-key"] == GECKO_KEY  # it was sent, and echoed
    # Refused at once: an echo is no reason to retry.
    assert [r.path for r in stub.requests].count("/api/v3/coins/markets") == 1
    assert run.source("coinpaprika")["records"] > 0  # the other source is not lost
    assert_no_secret_part(run)
    assert_bounded(run)


# --------------------------------------------------------------------------- item 2


@pytest.fixture
async def other_origin(fixtures: Path) -> AsyncIterator[StubHandle]:
    """A second upstream on another loopback address: its request log shows what arrived."""
    async with running_stub(fixtures, host="127.0.0.2") as handle:
        yield handle


async def test_cross_origin_redirect_strips_the_key_and_is_logged(
    stub: StubHandle, other_origin: StubHandle
) -> None:
    stub.set_faults([Fault(path="/api/v3", kind="redirect", location=other_origin.base_url)])
    run = await run_child(base_env(stub), "coingecko")
    gecko = run.source("coingecko")
    assert gecko["error"] is None
    assert gecko["records"] > 0  # followed, from the other origin's copy of the page
    [arrived] = other_origin.requests
    assert arrived.path == "/api/v3/coins/markets"
    assert "x-cg-demo-api-key" not in {name.lower() for name in arrived.headers}
    assert GECKO_KEY not in json.dumps(arrived.headers)
    [redirect] = run.events("http_redirect")
    assert redirect["location"].startswith(f"{other_origin.base_url}/api/v3/coins/markets?")
    assert (redirect["cross_origin"], redirect["status"]) == (True, 302)
    assert redirect["stripped_headers"] == ["x-cg-demo-api-key"]
    assert_no_secret_part(run)
    assert_bounded(run)


async def test_cross_origin_redirect_can_be_refused(
    stub: StubHandle, other_origin: StubHandle
) -> None:
    stub.set_faults([Fault(path="/api/v3", kind="redirect", location=other_origin.base_url)])
    env = base_env(stub, HTTP_CROSS_ORIGIN_REDIRECTS="refuse")
    run = await run_child(env, "coingecko", "coinpaprika")
    error = run.source("coingecko")["error"]
    assert f"HTTP 302 redirect to another origin ({other_origin.base_url}/api/v3/" in error
    assert "refused (HTTP_CROSS_ORIGIN_REDIRECTS=refuse)" in error
    assert other_origin.requests == []
    assert run.source("coinpaprika")["records"] > 0
    assert_no_secret_part(run)
    assert_bounded(run)


async def test_same_origin_redirect_keeps_the_key(stub: StubHandle) -> None:
    stub.set_faults([Fault(path="/api/v3", kind="redirect", location=stub.base_url)])
    run = await run_child(base_env(stub), "coingecko")
    assert run.source("coingecko")["records"] > 0
    first, second = stub.requests
    assert (first.fault, second.fault) == ("redirect", None)
    assert second.headers["x-cg-demo-api-key"] == GECKO_KEY
    [redirect] = run.events("http_redirect")
    assert (redirect["cross_origin"], redirect["stripped_headers"]) == (False, [])
    assert_no_secret_part(run)
    assert_bounded(run)


# --------------------------------------------------------------------------- item 3


def private_feed(stub: StubHandle) -> bytes:
    """A feed that quotes its own URL, token included (as private feeds do)."""
    self_url = stub.url(f"/rss/private?token={FEED_TOKEN}")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>
<title>Private feed</title>
<atom:link href="{self_url.replace("&", "&amp;")}" rel="self"/>
<item><guid>private-1</guid><title>Members-only Bitcoin note</title>
<link>{self_url}&amp;item=1</link><description>Read at {self_url}</description></item>
</channel></rss>""".encode()


async def test_credentials_in_feed_urls_are_used_but_never_stored_or_shown(
    stub: StubHandle, fixtures: Path
) -> None:
    (fixtures / "rss" / "private.xml").write_bytes(private_feed(stub))
    host = stub.base_url.removeprefix("http://")
    feeds = [
        stub.url(f"/rss/private?token={FEED_TOKEN}"),
        f"http://{FEED_USER_TOKEN}@{host}/rss/coindesk_empty_elements",
        f"http://reader:{FEED_PASSWORD}@{host}/rss/missing?api_key={FEED_TOKEN}x",
    ]
    run = await run_child(base_env(stub, RSS_FEED_URLS=",".join(feeds)), "rss")
    rss = run.source("rss")
    assert rss["error"] is None
    assert rss["records"] == 1 + 4  # the private feed and the good one are not lost
    # The credentials were sent, as configured...
    private, user_token, missing = stub.requests
    assert private.query["token"] == FEED_TOKEN
    assert user_token.headers["Authorization"].startswith("Basic ")
    assert missing.headers["Authorization"].startswith("Basic ")
    # ...and are shown and stored only redacted.
    shown = [stub.url("/rss/private?token=***"), f"http://***@{host}/rss/coindesk_empty_elements"]
    assert sorted(rss["cursor"]["feeds"]) == sorted(shown)
    assert {m["feed"] for m in rss["metadata"]} == set(shown)
    assert all(key.startswith((shown[0] + "#", shown[1] + "#")) for key in rss["raw_keys"])
    private_link = next(u for u in rss["urls"] if "item=1" in u)
    assert private_link == stub.url("/rss/private?token=***&item=1")
    [warning] = rss["warnings"]
    failed = f"http://reader:***@{host}/rss/missing?api_key=***"
    assert warning.startswith(f"feed {failed} failed: GET {failed}: HTTP 404 Not Found")
    assert_no_secret_part(run)
    assert_bounded(run)


# --------------------------------------------------------------------------- item 4


async def test_gzip_bomb_stops_at_the_body_limit(stub: StubHandle) -> None:
    stub.set_faults([Fault(path="/api/v3", kind="gzip_bomb", size_bytes=2 * 1024**3)])
    run = await run_child(base_env(stub), "coingecko", "coinpaprika")
    error = run.source("coingecko")["error"]
    assert f"the response body exceeds HTTP_MAX_BODY_BYTES={BODY_LIMIT} bytes" in error
    assert "(counted after decompression); stopped reading it" in error
    # Read once, not once per attempt.
    assert [r.path for r in stub.requests].count("/api/v3/coins/markets") == 1
    assert run.source("coinpaprika")["records"] > 0
    assert_no_secret_part(run)
    assert_bounded(run)


async def test_endless_chunked_feed_stops_at_the_limit_and_other_feeds_go_on(
    stub: StubHandle,
) -> None:
    stub.set_faults([Fault(path="/rss/feed", kind="endless")])
    feeds = [stub.url("/rss/feed"), stub.url("/rss/coindesk_empty_elements")]
    run = await run_child(base_env(stub, RSS_FEED_URLS=",".join(feeds)), "rss")
    rss = run.source("rss")
    [warning] = rss["warnings"]
    assert f"exceeds HTTP_MAX_BODY_BYTES={BODY_LIMIT} bytes" in warning
    assert rss["records"] == 4
    assert list(rss["cursor"]["feeds"]) == [feeds[1]]  # the endless one is retried next run
    assert_no_secret_part(run)
    assert_bounded(run)


async def test_huge_json_page_stops_at_the_body_limit(stub: StubHandle) -> None:
    # A million coins of about 200 bytes: the 200 MB page.
    stub.set_faults([Fault(path="/v1/tickers", kind="huge_json", items=1_000_000)])
    run = await run_child(base_env(stub), "coinpaprika", "coingecko")
    error = run.source("coinpaprika")["error"]
    assert f"exceeds HTTP_MAX_BODY_BYTES={BODY_LIMIT} bytes" in error
    assert run.source("coingecko")["records"] > 0
    assert_no_secret_part(run)
    assert_bounded(run)


async def test_page_with_too_many_items_is_refused_before_decoding(stub: StubHandle) -> None:
    # 30,000 small coins fit in the body limit (about 6 MB) but not in MAX_ITEMS_PER_PAGE.
    stub.set_faults([Fault(path="/api/v3", kind="huge_json", items=30_000)])
    run = await run_child(base_env(stub, MAX_ITEMS_PER_PAGE="1000"), "coingecko", "coinpaprika")
    error = run.source("coingecko")["error"]
    assert error == (
        "coingecko page 1: the response holds more than MAX_ITEMS_PER_PAGE=1000 items; "
        "refused without decoding it"
    )
    assert run.source("coinpaprika")["records"] > 0  # 10 tickers: within the limit
    assert_no_secret_part(run)
    assert_bounded(run)


def test_echoed_error_values_are_cut() -> None:
    body = json.dumps({"error": "x" * 100_000}).encode()
    with pytest.raises(SourceError) as caught:
        decode_json_items(body, what="coingecko page 1")
    message = str(caught.value)
    assert message.startswith("coingecko page 1: upstream returned an error object: 'xxx")
    assert len(message) < 300
    assert message.endswith("…")
