"""More upstream faults through the stub, beyond tests/e2e/test_faults.py: Retry-After as an
HTTP date for CoinPaprika and RSS, 504 for every source, connection resets on RSS, timeouts on
CoinGecko page 2 only, a truncated (malformed) RSS document, an HTML page served with status 200
for every source, renamed fields (drift) and wrong-typed items.

Every case ends in a recorded success or a recorded failure with its reason, the worker never
dies with a traceback, and nothing is lost: after a failed run, a clean run yields the full
table (the counts the source parsers give for our fixtures).
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryptoetl.sources.coingecko import parse_markets_page
from cryptoetl.sources.coinpaprika import parse_tickers
from cryptoetl.sources.rss import parse_feed
from cryptoetl.stub.faults import ALWAYS, Fault
from cryptoetl.stub.replay import FROZEN
from cryptoetl.stub.server import StubHandle, running_stub
from tests.e2e.conftest import WorkerResult, query, run_worker, worker_env
from tests.pg import TestDatabase

PATHS = {"coinpaprika": "/v1/tickers", "coingecko": "/api/v3/coins/markets", "rss": "/rss"}
# Our CoinGecko fixture pages hold 10 coins: with 10 per page, page 2 is fetched too.
FAST = {
    "HTTP_TIMEOUT_S": "1.5",
    "HTTP_MAX_ATTEMPTS": "3",
    "HTTP_MAX_WAIT_S": "6",
    "COINGECKO_PER_PAGE": "10",
}
HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
    "<h1>Checking your browser before accessing the site.</h1>"
    "<p>This process is automatic. Your browser will redirect shortly.</p></body></html>"
)


def expected_counts(fixtures: Path) -> dict[str, int]:
    """Records a clean run stores per source, from the sources' own parsers."""
    now = datetime.now(UTC)
    gecko = sum(
        len(parse_markets_page(p.read_bytes(), fetched_at=now).records)
        for p in sorted((fixtures / "coingecko").glob("markets_page_*.json"))
    )
    paprika = len(
        parse_tickers(
            (fixtures / "coinpaprika" / "tickers.json").read_bytes(), fetched_at=now
        ).records
    )
    rss = len(
        parse_feed(
            (fixtures / "rss" / "feed.xml").read_bytes(),
            feed_url="http://stub/rss",
            content_type="application/rss+xml",
            fetched_at=now,
        ).records
    )
    return {"coingecko": gecko, "coinpaprika": paprika, "rss": rss}


def last_run(db: TestDatabase, source: str) -> dict[str, object]:
    rows = query(
        db,
        "SELECT status, error, processed, inserted, updated, rejected, drift_events, warnings "
        "FROM runs WHERE source_type = %s ORDER BY started_at DESC LIMIT 1",
        source,
    )
    assert rows, f"no run of {source} was recorded"
    keys = ("status", "error", "processed", "inserted", "updated", "rejected", "drift", "warnings")
    return dict(zip(keys, rows[0], strict=True))


def stored(db: TestDatabase, source: str) -> int:
    return int(str(query(db, "SELECT count(*) FROM records WHERE source_type = %s", source)[0][0]))


def no_crash(result: WorkerResult) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert '"run_error"' not in result.stdout, "an unexpected exception, not a recorded reason"


async def clean_run_restores_everything(
    db: TestDatabase, fixtures_dir: Path, csv_dir: Path, source: str
) -> None:
    """After whatever happened before: a clean run against the genuine fixtures is complete."""
    async with running_stub(fixtures_dir, mode=FROZEN) as clean:
        result = await run_worker(worker_env(db, clean, str(csv_dir), **FAST), "--source", source)
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    assert last_run(db, source)["status"] == "success"
    assert stored(db, source) == expected_counts(fixtures_dir)[source]


def copy_fixtures(fixtures_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "fixtures"
    shutil.copytree(fixtures_dir, target)
    return target


# --- transient faults: a recorded success after retries ----------------------------------------


@pytest.mark.parametrize("source", ["coinpaprika", "rss"])
async def test_retry_after_http_date_is_honoured(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, fixtures_dir: Path, source: str
) -> None:
    stub.set_faults(f"{PATHS[source]}:429*1:retry_after=1:retry_after_date=true")
    result = await run_worker(worker_env(clean_db, stub, str(csv_dir), **FAST), "--source", source)
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    run = last_run(clean_db, source)
    assert (run["status"], run["error"]) == ("success", None)
    assert stored(clean_db, source) == expected_counts(fixtures_dir)[source]
    calls = [r for r in stub.requests if r.path == PATHS[source]]
    assert [c.fault for c in calls[:2]] == ["429", None]
    # The date is whole seconds, at least one second after the 429 was sent.
    assert calls[1].time >= math.ceil(calls[0].time + 1) - 0.1


@pytest.mark.parametrize("source", ["coinpaprika", "coingecko", "rss"])
async def test_gateway_timeout_504_recovers(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, fixtures_dir: Path, source: str
) -> None:
    stub.set_faults(f"{PATHS[source]}:504*1")
    result = await run_worker(worker_env(clean_db, stub, str(csv_dir), **FAST), "--source", source)
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    assert last_run(clean_db, source)["status"] == "success"
    assert stored(clean_db, source) == expected_counts(fixtures_dir)[source]
    assert [r.fault for r in stub.requests if r.path == PATHS[source]][:2] == ["504", None]


async def test_connection_reset_on_rss_recovers(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, fixtures_dir: Path
) -> None:
    stub.set_faults("/rss:reset*2")
    result = await run_worker(worker_env(clean_db, stub, str(csv_dir), **FAST), "--source", "rss")
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    assert last_run(clean_db, "rss")["status"] == "success"
    assert stored(clean_db, "rss") == expected_counts(fixtures_dir)["rss"]
    assert len([r for r in stub.requests if r.path == "/rss"]) == 3


def _page_two_delayed(path: str, times: int) -> list[Fault]:
    """Page 1 passes untouched (a zero delay), then page 2 is held past the client's timeout."""
    return [
        Fault(kind="delay", path=path, delay_s=0, count=1),
        Fault(kind="delay", path=path, delay_s=4, count=times),
    ]


async def test_timeout_on_coingecko_page_two_once_recovers(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, fixtures_dir: Path
) -> None:
    stub.set_faults(_page_two_delayed(PATHS["coingecko"], 1))
    env = worker_env(clean_db, stub, str(csv_dir), **FAST)
    result = await run_worker(env, "--source", "coingecko")
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    assert last_run(clean_db, "coingecko")["status"] == "success"
    assert stored(clean_db, "coingecko") == expected_counts(fixtures_dir)["coingecko"]
    pages = [r.query.get("page") for r in stub.requests if r.path == PATHS["coingecko"]]
    assert pages[:3] == ["1", "2", "2"], "page 2 was retried, page 1 was not fetched again"


# --- permanent faults: a recorded failure, then a clean run is complete ------------------------


async def test_timeouts_on_coingecko_page_two_fail_after_page_one_is_kept(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, fixtures_dir: Path
) -> None:
    stub.set_faults(_page_two_delayed(PATHS["coingecko"], ALWAYS))
    env = worker_env(clean_db, stub, str(csv_dir), **{**FAST, "HTTP_MAX_ATTEMPTS": "2"})
    result = await run_worker(env, "--source", "coingecko")
    no_crash(result)
    assert result.returncode == 1
    run = last_run(clean_db, "coingecko")
    assert run["status"] == "failed"
    assert "timeout" in str(run["error"]).lower()
    assert "page=2" in str(run["error"])
    page_one = len(
        parse_markets_page(
            (fixtures_dir / "coingecko" / "markets_page_1.json").read_bytes(),
            fetched_at=datetime.now(UTC),
        ).records
    )
    assert stored(clean_db, "coingecko") == page_one, "page 1 was committed before page 2 failed"
    await clean_run_restores_everything(clean_db, fixtures_dir, csv_dir, "coingecko")


async def test_truncated_rss_document(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path, fixtures_dir: Path
) -> None:
    """Half an XML document: what the feed parser recovers is kept and the run says the feed
    is ill-formed; nothing crashes. A clean run then has every entry."""
    stub.set_faults("/rss:truncate*always")
    result = await run_worker(worker_env(clean_db, stub, str(csv_dir), **FAST), "--source", "rss")
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    run = last_run(clean_db, "rss")
    assert run["status"] == "success"
    warnings = " ".join(str(w) for w in run["warnings"])  # type: ignore[attr-defined]
    assert "ill-formed" in warnings, run
    assert '"source_warning"' in result.stdout
    kept = stored(clean_db, "rss")
    assert 0 < kept < expected_counts(fixtures_dir)["rss"]
    assert run["inserted"] == kept
    await clean_run_restores_everything(clean_db, fixtures_dir, csv_dir, "rss")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("coinpaprika", "not a JSON array"),
        ("coingecko", "not a JSON array"),
        ("rss", "not an RSS or Atom feed"),
    ],
)
async def test_html_page_with_status_200_is_a_recorded_failure(
    clean_db: TestDatabase,
    csv_dir: Path,
    fixtures_dir: Path,
    tmp_path: Path,
    source: str,
    reason: str,
) -> None:
    broken = copy_fixtures(fixtures_dir, tmp_path)
    files = {
        "coinpaprika": ["coinpaprika/tickers.json"],
        "coingecko": ["coingecko/markets_page_1.json", "coingecko/markets_page_2.json"],
        "rss": ["rss/feed.xml"],
    }[source]
    for name in files:
        (broken / name).write_text(HTML_PAGE)
    async with running_stub(broken, mode=FROZEN) as html_stub:
        env = worker_env(clean_db, html_stub, str(csv_dir), **FAST)
        result = await run_worker(env, "--source", source)
    no_crash(result)
    assert result.returncode == 1
    run = last_run(clean_db, source)
    assert run["status"] == "failed"
    assert reason in str(run["error"]), run["error"]
    assert "Just a moment" in str(run["error"]), "the reason quotes the start of the body"
    assert stored(clean_db, source) == 0
    checkpoint = query(
        clean_db, "SELECT status, last_error FROM checkpoints WHERE source_type = %s", source
    )
    assert checkpoint == [("failed", run["error"])]
    await clean_run_restores_everything(clean_db, fixtures_dir, csv_dir, source)


# --- data faults: drift and rejects, recorded; good rows ingested ------------------------------


def _edit_json(path: Path, edit: object) -> None:
    items = json.loads(path.read_text())
    edit(items)  # type: ignore[operator]
    path.write_text(json.dumps(items))


def _rename(old: str, new: str) -> object:
    def edit(items: list[dict[str, object]]) -> None:
        for item in items:
            item[new] = item.pop(old)

    return edit


async def test_coingecko_renamed_optional_field_is_drift_and_still_ingested(
    clean_db: TestDatabase, csv_dir: Path, fixtures_dir: Path, tmp_path: Path
) -> None:
    drifted = copy_fixtures(fixtures_dir, tmp_path)
    for page in sorted((drifted / "coingecko").glob("markets_page_*.json")):
        _edit_json(page, _rename("current_price", "current_price_usd"))
    async with running_stub(drifted, mode=FROZEN) as drift_stub:
        env = worker_env(clean_db, drift_stub, str(csv_dir), **FAST)
        result = await run_worker(env, "--source", "coingecko")
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    run = last_run(clean_db, "coingecko")
    assert run["status"] == "success"
    assert run["drift"] == 2
    assert stored(clean_db, "coingecko") == expected_counts(fixtures_dir)["coingecko"]
    events = query(
        clean_db,
        "SELECT field, change, candidate_field FROM drift_events WHERE source_type = 'coingecko' "
        "ORDER BY field",
    )
    assert ("current_price", "removed", "current_price_usd") in events
    assert ("current_price_usd", "added", None) in events
    # The price is unknown now (never invented), the rest of each row is there.
    assert query(
        clean_db,
        "SELECT count(*), count(price_usd), count(market_cap_usd) FROM records "
        "WHERE source_type = 'coingecko'",
    ) == [(run["inserted"], 0, run["inserted"])]


async def test_coingecko_renamed_required_field_rejects_with_reasons_then_recovers(
    clean_db: TestDatabase, csv_dir: Path, fixtures_dir: Path, tmp_path: Path
) -> None:
    drifted = copy_fixtures(fixtures_dir, tmp_path)
    page_one = drifted / "coingecko" / "markets_page_1.json"
    _edit_json(page_one, _rename("symbol", "ticker"))
    rejected_items = len(json.loads(page_one.read_text()))
    async with running_stub(drifted, mode=FROZEN) as drift_stub:
        env = worker_env(clean_db, drift_stub, str(csv_dir), **FAST)
        result = await run_worker(env, "--source", "coingecko")
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    run = last_run(clean_db, "coingecko")
    assert (run["status"], run["rejected"]) == ("success", rejected_items)
    reasons = query(
        clean_db, "SELECT DISTINCT reason FROM rejected_records WHERE source_type = 'coingecko'"
    )
    assert len(reasons) == 1
    assert "symbol" in str(reasons[0][0])
    # The raw payloads of rejected coins are kept as received.
    assert query(
        clean_db, "SELECT count(*) FROM raw_coingecko_markets WHERE payload ? 'ticker'"
    ) == [(rejected_items,)]
    expected = expected_counts(fixtures_dir)["coingecko"]
    assert stored(clean_db, "coingecko") == expected - rejected_items
    await clean_run_restores_everything(clean_db, fixtures_dir, csv_dir, "coingecko")


async def test_one_wrong_typed_item_is_rejected_and_the_rest_ingested(
    clean_db: TestDatabase, csv_dir: Path, fixtures_dir: Path, tmp_path: Path
) -> None:
    broken = copy_fixtures(fixtures_dir, tmp_path)

    def gecko(items: list[dict[str, object]]) -> None:
        items[2]["current_price"] = "sixty-nine thousand"

    def paprika(items: list[dict[str, object]]) -> None:
        items[3]["rank"] = "first"

    _edit_json(broken / "coingecko" / "markets_page_1.json", gecko)
    _edit_json(broken / "coinpaprika" / "tickers.json", paprika)
    async with running_stub(broken, mode=FROZEN) as bad_stub:
        env = worker_env(clean_db, bad_stub, str(csv_dir), **FAST)
        result = await run_worker(env, "--source", "coingecko", "--source", "coinpaprika")
    no_crash(result)
    assert result.returncode == 0, result.stdout[-3000:]
    expected = expected_counts(fixtures_dir)
    for source, field in (("coingecko", "current_price"), ("coinpaprika", "rank")):
        run = last_run(clean_db, source)
        assert (run["status"], run["rejected"]) == ("success", 1), (source, run)
        assert stored(clean_db, source) == expected[source] - 1
        reason = query(
            clean_db, "SELECT reason FROM rejected_records WHERE source_type = %s", source
        )
        assert len(reason) == 1
        assert field in str(reason[0][0]), reason
