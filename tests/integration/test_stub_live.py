"""The stub upstream's live mode: fixtures moved to now, prices on a seeded walk, per time step.

The stub runs on our real fixtures with a clock each test moves itself (no sleeping until the
next step); the parsers the worker uses read what it serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cryptoetl.sources.base import Batch, MarketRecord, NewsRecord
from cryptoetl.sources.coingecko import parse_markets_page
from cryptoetl.sources.coinpaprika import parse_tickers
from cryptoetl.sources.rss import parse_feed
from cryptoetl.stub import FROZEN, Live, ReplayMode, StubHandle, replay_mode, running_stub
from cryptoetl.stub.live import Moment, live_feed, live_markets, live_tickers
from cryptoetl.stub.walk import PEGGED, VOLATILE, params_for, price_factor
from tests.integration.test_stub_upstream import FEED_MTIME, fetch, make_fixtures

SEED = 42
STEP_S = 60
T0 = 1_760_000_040  # a step's start (2025-10-09T08:54:00Z)
ROUTES = {
    "tickers": "/v1/tickers",
    "page 1": "/api/v3/coins/markets?page=1",
    "page 2": "/api/v3/coins/markets?page=2",
    "feed": "/rss",
    "coindesk": "/rss/coindesk_empty_elements",
}
FEED_URL = "http://stub.test/rss"


@dataclass
class ManualClock:
    """The live stub's clock, moved by the test: time steps without waiting for them."""

    now: float

    def __call__(self) -> float:
        return self.now


def live(clock: ManualClock, seed: int = SEED) -> Live:
    return Live(seed=seed, step_s=STEP_S, clock=clock)


@asynccontextmanager
async def serving(
    fixtures: Path, mode: ReplayMode, faults: str = ""
) -> AsyncIterator[tuple[StubHandle, aiohttp.ClientSession]]:
    async with (
        running_stub(fixtures, faults=faults, mode=mode) as stub,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        yield stub, session


async def bodies(stub: StubHandle, session: aiohttp.ClientSession) -> dict[str, bytes]:
    found = {}
    for name, path in ROUTES.items():
        status, _, body = await fetch(session, stub.url(path))
        assert status == 200, (name, body[:200])
        found[name] = body
    return found


def coins(body: bytes) -> dict[str, dict[str, Any]]:
    return {coin["id"]: coin for coin in json.loads(body)}


def usd(ticker: dict[str, Any]) -> dict[str, Any]:
    quote: dict[str, Any] = ticker["quotes"]["USD"]
    return quote


def iso(timestamp: float, millis: bool) -> str:
    text = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.000Z" if millis else f"{text}Z"


# --------------------------------------------------------------------------- moving


async def test_same_step_same_bytes_next_step_moves(fixtures_dir: Path) -> None:
    clock = ManualClock(T0 + 1)
    async with serving(fixtures_dir, live(clock)) as (stub, session):
        first = await bodies(stub, session)
        clock.now = T0 + STEP_S - 0.5  # later, within the same upstream refresh
        again = await bodies(stub, session)
        clock.now = T0 + STEP_S
        later = await bodies(stub, session)
    assert again == first
    for name in ROUTES:
        assert later[name] != first[name], name

    for page in ("page 1", "page 2"):
        now, then = coins(first[page]), coins(later[page])
        assert {c["last_updated"] for c in now.values()} == {iso(T0, millis=True)}
        assert {c["last_updated"] for c in then.values()} == {iso(T0 + STEP_S, millis=True)}
        for coin_id, coin in now.items():
            assert then[coin_id]["current_price"] != coin["current_price"], coin_id
    now_tickers, later_tickers = coins(first["tickers"]), coins(later["tickers"])
    assert {t["last_updated"] for t in now_tickers.values()} == {iso(T0, millis=False)}
    assert {t["last_updated"] for t in later_tickers.values()} == {iso(T0 + STEP_S, millis=False)}
    for ticker_id, ticker in now_tickers.items():
        assert usd(later_tickers[ticker_id])["price"] != usd(ticker)["price"], ticker_id


async def test_prices_are_the_seeded_walk_from_the_recorded_price(fixtures_dir: Path) -> None:
    recorded_gecko = coins((fixtures_dir / "coingecko" / "markets_page_1.json").read_bytes())
    recorded_paprika = coins((fixtures_dir / "coinpaprika" / "tickers.json").read_bytes())
    clock = ManualClock(T0 + 30)
    async with serving(fixtures_dir, live(clock)) as (stub, session):
        served = await bodies(stub, session)
    step = T0 // STEP_S

    btc = coins(served["page 1"])["bitcoin"]
    recorded_btc = recorded_gecko["bitcoin"]["current_price"]
    assert isinstance(recorded_btc, int)  # and an integer stays one
    assert btc["current_price"] == round(recorded_btc * price_factor(SEED, "btc", VOLATILE, step))
    paprika_btc = usd(coins(served["tickers"])["btc-bitcoin"])
    recorded_paprika_btc = usd(recorded_paprika["btc-bitcoin"])["price"]
    # The same walk (by symbol) for both sources: their recorded spread is kept.
    assert paprika_btc["price"] == pytest.approx(
        recorded_paprika_btc * price_factor(SEED, "btc", VOLATILE, step), rel=1e-6
    )
    usdt = coins(served["page 1"])["tether"]
    assert params_for(recorded_gecko["tether"]["current_price"]) is PEGGED
    assert usdt["current_price"] == pytest.approx(
        recorded_gecko["tether"]["current_price"] * price_factor(SEED, "usdt", PEGGED, step),
        rel=1e-5,
    )


async def test_one_seed_one_walk(fixtures_dir: Path) -> None:
    clock = ManualClock(T0 + 7)
    async with serving(fixtures_dir, live(clock)) as (stub, session):
        one = await bodies(stub, session)
    async with serving(fixtures_dir, live(clock)) as (stub, session):
        same_seed = await bodies(stub, session)
    async with serving(fixtures_dir, live(clock, seed=SEED + 1)) as (stub, session):
        other_seed = await bodies(stub, session)
    assert same_seed == one
    ours, theirs = coins(one["page 1"]), coins(other_seed["page 1"])
    for coin_id, coin in ours.items():
        assert theirs[coin_id]["current_price"] != coin["current_price"], coin_id
        assert theirs[coin_id]["last_updated"] == coin["last_updated"]
    assert other_seed["feed"] == one["feed"]  # news does not depend on the walk


def test_walk_stays_plausible_for_a_year() -> None:
    steps = range(T0 // STEP_S, T0 // STEP_S + 365 * 1440, 1440)  # one sample a day
    for coin, params, low, high in (
        ("btc", VOLATILE, 0.85, 1.15),
        ("hot", VOLATILE, 0.85, 1.15),
        ("usdt", PEGGED, 0.995, 1.005),
    ):
        factors = [price_factor(SEED, coin, params, step) for step in steps]
        assert low < min(factors), coin
        assert max(factors) < high, coin
        assert len(set(factors)) == len(factors), coin  # it does move
        moves = [
            price_factor(SEED, coin, params, step + 1) / price_factor(SEED, coin, params, step)
            for step in steps[:30]
        ]
        assert all(0.98 < move < 1.02 for move in moves), coin  # one step is a small move


@pytest.mark.parametrize("step", range(T0 // STEP_S, T0 // STEP_S + 3000, 100))
def test_served_markets_are_self_consistent(fixtures_dir: Path, step: int) -> None:
    moment = Moment(step=step, step_s=STEP_S)
    for page in ("markets_page_1.json", "markets_page_2.json"):
        recorded = coins((fixtures_dir / "coingecko" / page).read_bytes())
        served = coins(live_markets((fixtures_dir / "coingecko" / page).read_bytes(), 1, moment))
        assert list(served) == list(recorded)
        for coin_id, coin in served.items():
            before = recorded[coin_id]
            assert list(coin) == list(before), coin_id  # no key added, removed or reordered
            price = coin["current_price"]
            assert price > 0
            assert coin["low_24h"] <= price <= coin["high_24h"], coin_id
            assert coin["atl"] <= price <= coin["ath"], coin_id
            supply = before["market_cap"] / before["current_price"]
            assert coin["market_cap"] / price == pytest.approx(supply, rel=1e-3), coin_id
            change = coin["price_change_percentage_24h"] / 100
            day_ago = price - coin["price_change_24h"]
            assert price / day_ago - 1 == pytest.approx(change, rel=1e-3, abs=1e-4), coin_id
    tickers = live_tickers((fixtures_dir / "coinpaprika" / "tickers.json").read_bytes(), 1, moment)
    for ticker in json.loads(tickers):
        quote = usd(ticker)
        assert 0 < quote["price"] <= quote["ath_price"]
        assert quote["percent_from_price_ath"] <= 0
        assert quote["market_cap_change_24h"] == quote["percent_change_24h"]


# --------------------------------------------------------------------------- our parsers


def check_clean(batch: Batch, frozen: Batch) -> None:
    assert batch.rejects == []
    assert batch.drift == []
    assert batch.warnings == frozen.warnings
    assert len(batch.records) == len(frozen.records)


async def test_our_parsers_read_live_responses_without_rejects_or_drift(
    fixtures_dir: Path,
) -> None:
    clock = ManualClock(T0 + 12)
    async with serving(fixtures_dir, live(clock)) as (stub, session):
        served = await bodies(stub, session)
    fetched_at = datetime.fromtimestamp(clock.now, UTC)
    step_start = datetime.fromtimestamp(T0, UTC)

    for name, page in (("page 1", 1), ("page 2", 2)):
        recorded = (fixtures_dir / "coingecko" / f"markets_page_{page}.json").read_bytes()
        batch = parse_markets_page(served[name], fetched_at=fetched_at)
        check_clean(batch, parse_markets_page(recorded, fetched_at=fetched_at))
        assert {r.source_timestamp for r in batch.records} == {step_start}
    recorded = (fixtures_dir / "coinpaprika" / "tickers.json").read_bytes()
    batch = parse_tickers(served["tickers"], fetched_at=fetched_at)
    check_clean(batch, parse_tickers(recorded, fetched_at=fetched_at))
    assert {r.source_timestamp for r in batch.records} == {step_start}
    assert all(isinstance(r, MarketRecord) and r.price_usd for r in batch.records)

    for name, file, newest_recorded in (
        ("feed", "feed.xml", datetime(2024, 11, 5, 12, 5, tzinfo=UTC)),  # its lastBuildDate
        ("coindesk", "coindesk_empty_elements.xml", datetime(2024, 11, 6, 8, 15, tzinfo=UTC)),
    ):
        frozen = news(parse_rss((fixtures_dir / "rss" / file).read_bytes(), fetched_at))
        moved = news(parse_rss(served[name], fetched_at))
        check_clean(moved.batch, frozen.batch)
        # One offset for every entry (their spacing kept), the newest date now on the step.
        offsets = {moved.stamps[key] - stamp for key, stamp in frozen.stamps.items()}
        assert offsets == {step_start - newest_recorded}, name


@dataclass
class News:
    batch: Batch
    stamps: dict[str, datetime]


def parse_rss(body: bytes, fetched_at: datetime) -> Batch:
    return parse_feed(
        body, feed_url=FEED_URL, content_type="application/rss+xml", fetched_at=fetched_at
    )


def news(batch: Batch) -> News:
    stamps = {}
    for record in batch.records:
        assert isinstance(record, NewsRecord)
        assert record.source_timestamp is not None
        stamps[record.source_id] = record.source_timestamp
    return News(batch, stamps)


ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Releases</title><id>urn:releases</id><updated>2024-11-05T12:00:00Z</updated>
  <entry><title>v2</title><id>urn:v2</id><link href="https://x.test/v2"/>
    <published>2024-11-05T10:30:00+01:00</published><updated>2024-11-05T11:45:00Z</updated>
  </entry>
  <entry><title>v1</title><id>urn:v1</id><link href="https://x.test/v1"/>
    <updated>2024-11-04T18:00:00.250000-05:00</updated>
  </entry>
</feed>
"""


def test_atom_dates_move_together_in_their_own_formats() -> None:
    moment = Moment.at(T0, STEP_S)
    moved, newest = live_feed(ATOM, moment)
    assert newest == moment.start
    offset = moment.start - datetime(2024, 11, 5, 12, tzinfo=UTC)
    dates = re.findall(rb"<(updated|published)>([^<]+)<", moved)
    assert [(tag, text.decode()) for tag, text in dates] == [
        (b"updated", iso(T0, millis=False)),
        (b"published", (datetime.fromisoformat("2024-11-05T10:30:00+01:00") + offset).isoformat()),
        (b"updated", iso(T0 - 15 * 60, millis=False)),
        (b"updated", (datetime.fromisoformat("2024-11-04T18:00:00.25-05:00") + offset).isoformat()),
    ]
    assert dates[1][1].endswith(b"+01:00")
    fetched_at = moment.start + timedelta(seconds=1)
    frozen, live_news = news(parse_rss(ATOM, fetched_at)), news(parse_rss(moved, fetched_at))
    check_clean(live_news.batch, frozen.batch)
    assert {live_news.stamps[k] - v for k, v in frozen.stamps.items()} == {offset}


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"error": "rate limited"}',
        b"[1, 2, 3]",
        b"",
    ],
)
def test_a_body_that_is_not_a_recording_is_served_as_it_is(body: bytes) -> None:
    moment = Moment.at(T0, STEP_S)
    assert live_markets(body, SEED, moment) == body
    assert live_tickers(body, SEED, moment) == body
    assert live_feed(body, moment) == (body, None)


def test_feed_dates_that_cannot_move_stay_as_recorded() -> None:
    dates = [
        b"Fri, 31 Dec 9999 00:00:00 +0000",  # the newest: now, so the others move back 7975 years
        b"Mon, 01 Jan 0001 00:00:00 +0000",  # which this one cannot
        b"not a date",
    ]
    body = b"<rss><channel>%s</channel></rss>" % b"".join(
        b"<item><pubDate>%s</pubDate></item>" % date for date in dates
    )
    moved, newest = live_feed(body, Moment.at(T0, STEP_S))
    assert newest == datetime.fromtimestamp(T0, UTC)
    assert moved == body.replace(dates[0], b"Thu, 09 Oct 2025 08:54:00 +0000")


def test_a_coin_without_price_or_timestamp_keeps_its_fields() -> None:
    body = b'[{"id": "x", "symbol": "x", "current_price": null, "market_cap": 5}]'
    served = live_markets(body, SEED, Moment.at(T0, STEP_S))
    assert json.loads(served) == json.loads(body)


@pytest.mark.parametrize("folder", ["coingecko", "coinpaprika", "rss"])
def test_live_corpus_parses_like_the_recording(corpus_dir: Path, folder: str) -> None:
    """Genuine captures, moved: the parsers find what they found in the recording."""
    moment = Moment.at(T0, STEP_S)
    fetched_at = moment.start + timedelta(seconds=1)
    parse = {
        "coingecko": lambda body: parse_markets_page(body, fetched_at=fetched_at),
        "coinpaprika": lambda body: parse_tickers(body, fetched_at=fetched_at),
        "rss": lambda body: parse_rss(body, fetched_at),
    }[folder]
    move = {
        "coingecko": lambda body: live_markets(body, SEED, moment),
        "coinpaprika": lambda body: live_tickers(body, SEED, moment),
        "rss": lambda body: live_feed(body, moment)[0],
    }[folder]
    files = [
        p for p in sorted((corpus_dir / folder).iterdir()) if p.suffix not in (".yml", ".yaml")
    ]
    assert files
    for path in files:
        recorded = path.read_bytes()
        try:
            frozen = parse(recorded)
        except Exception as exc:  # a capture our parser refuses: live refuses it alike
            with pytest.raises(type(exc)):
                parse(move(recorded))
            continue
        moved = parse(move(recorded))
        assert len(moved.records) == len(frozen.records), path.name
        assert len(moved.rejects) == len(frozen.rejects), path.name
        assert [(d.field, d.change, d.observed_type) for d in moved.drift] == [
            (d.field, d.change, d.observed_type) for d in frozen.drift
        ], path.name


# --------------------------------------------------------------------------- RSS validators


async def test_feed_validators_follow_the_moved_feed(fixtures_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures_dir, tmp_path / "fixtures")
    os.utime(tmp_path / "fixtures" / "rss" / "feed.xml", (FEED_MTIME, FEED_MTIME))  # before T0
    clock = ManualClock(T0 + 3)
    async with serving(tmp_path / "fixtures", live(clock)) as (stub, session):
        url = stub.url("/rss")
        _, headers, _ = await fetch(session, url)
        etag, last_modified = headers["etag"], headers["last-modified"]
        clock.now = T0 + STEP_S - 1
        by_etag = await fetch(session, url, headers={"If-None-Match": etag})
        by_date = await fetch(session, url, headers={"If-Modified-Since": last_modified})
        clock.now = T0 + STEP_S
        moved_etag = await fetch(session, url, headers={"If-None-Match": etag})
        moved_date = await fetch(session, url, headers={"If-Modified-Since": last_modified})
    assert parsedate_to_datetime(last_modified).timestamp() == T0  # the newest date served
    assert (by_etag[0], by_date[0]) == (304, 304)  # nothing changed within the step
    assert moved_etag[0] == moved_date[0] == 200
    assert moved_etag[1]["etag"] != etag
    assert moved_etag[1]["last-modified"] == formatdate(T0 + STEP_S, usegmt=True)


async def test_a_feed_without_dates_never_changes(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with serving(make_fixtures(tmp_path), live(clock)) as (stub, session):
        url = stub.url("/rss")
        _, headers, _ = await fetch(session, url)
        clock.now = T0 + 10 * STEP_S
        by_etag = await fetch(session, url, headers={"If-None-Match": headers["etag"]})
        by_date = await fetch(session, url, headers={"If-Modified-Since": headers["last-modified"]})
    assert parsedate_to_datetime(headers["last-modified"]).timestamp() == FEED_MTIME
    assert (by_etag[0], by_date[0]) == (304, 304)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("mode_name", ["frozen", "live"])
async def test_faults_apply_in_both_modes(fixtures_dir: Path, mode_name: str) -> None:
    mode: ReplayMode = FROZEN if mode_name == "frozen" else live(ManualClock(T0 + 5))
    faults = "/v1/tickers:503;/v1/tickers:truncate;/api/v3:reset*always;/rss:empty;/rss:429"
    async with serving(fixtures_dir, mode, faults) as (stub, session):
        unavailable = await fetch(session, stub.url("/v1/tickers"))
        truncated = await fetch(session, stub.url("/v1/tickers"))
        tickers = await fetch(session, stub.url("/v1/tickers"))
        with pytest.raises(aiohttp.ClientConnectionError):
            await fetch(session, stub.url("/api/v3/coins/markets"))
        empty = await fetch(session, stub.url("/rss"))
        limited = await fetch(session, stub.url("/rss"))
        feed = await fetch(session, stub.url("/rss"))
    assert (unavailable[0], limited[0]) == (503, 429)
    assert (truncated[0], truncated[2]) == (200, tickers[2][: len(tickers[2]) // 2])
    assert (empty[0], empty[2], feed[0]) == (200, b"", 200)
    recorded = (fixtures_dir / "coinpaprika" / "tickers.json").read_bytes()
    assert (tickers[2] == recorded) is (mode_name == "frozen")
    injected = [r.fault for r in stub.requests if r.fault]
    assert "reset" in injected  # (the client retries a reset once on a fresh connection)
    assert [f for f in injected if f != "reset"] == ["503", "truncate", "empty", "429"]


# --------------------------------------------------------------------------- configuration


def test_replay_mode_from_options_and_environment() -> None:
    assert replay_mode(environ={}) == Live(seed=0, step_s=60)
    assert replay_mode(environ={"STUB_FROZEN": "1"}) is FROZEN
    assert replay_mode(environ={"STUB_FROZEN": "no", "STUB_SEED": "7", "STUB_STEP_S": "5"}) == Live(
        seed=7, step_s=5
    )
    # Options beat the environment.
    env = {"STUB_FROZEN": "true", "STUB_SEED": "7", "STUB_STEP_S": "5"}
    assert replay_mode(frozen=False, seed=3, step_s=2, environ=env) == Live(seed=3, step_s=2)
    assert replay_mode(frozen=True, environ={}) is FROZEN
    for bad, name in (
        ({"STUB_FROZEN": "maybe"}, "STUB_FROZEN"),
        ({"STUB_SEED": "x"}, "STUB_SEED"),
        ({"STUB_STEP_S": "1.5"}, "STUB_STEP_S"),
        ({"STUB_STEP_S": "0"}, "at least 1 s"),
    ):
        with pytest.raises(ValueError, match=name):
            replay_mode(environ=bad)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def stub_command(
    fixtures: Path, *args: str, **env: str
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """`cryptoetl stub-upstream ARGS` on a free port, until the block ends."""
    port = _free_port()
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("STUB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cryptoetl", "stub-upstream", "--port", str(port),
        "--fixtures", str(fixtures), *args,
        env={**clean_env, "LOG_LEVEL": "WARNING", **env},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for _ in range(300):
                assert proc.returncode is None, "the stub exited"
                try:
                    await fetch(session, f"{base}/")
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            yield base, session
    finally:
        proc.terminate()
        await proc.wait()


async def test_command_is_live_with_its_seed_and_step_or_frozen(fixtures_dir: Path) -> None:
    recorded = (fixtures_dir / "coinpaprika" / "tickers.json").read_bytes()
    async with stub_command(fixtures_dir, "--seed", "5", "--step", "1") as (base, session):
        _, _, served = await fetch(session, f"{base}/v1/tickers")
    # The step it served, from its timestamp: the body is the walk's for that step and seed 5.
    stamp = datetime.fromisoformat(json.loads(served)[0]["last_updated"]).timestamp()
    assert served == live_tickers(recorded, 5, Moment(step=int(stamp), step_s=1))
    async with stub_command(fixtures_dir, "--frozen") as (base, session):
        frozen_by_option = (await fetch(session, f"{base}/v1/tickers"))[2]
    async with stub_command(fixtures_dir, STUB_FROZEN="1") as (base, session):
        frozen_by_env = (await fetch(session, f"{base}/v1/tickers"))[2]
    assert frozen_by_option == frozen_by_env == recorded


async def test_command_refuses_a_bad_step(fixtures_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cryptoetl", "stub-upstream", "--port", str(_free_port()),
        "--fixtures", str(fixtures_dir), "--step", "0",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode().strip() == "cryptoetl: the live stub's step must be at least 1 s, got 0"
