"""SIGKILL the worker at seeded random instants of a multi-source load (a large CSV, CoinPaprika,
five CoinGecko pages and RSS, all at once), several times per seed, then run it to completion:
every table the worker fills equals a clean run's on a fresh database, row for row.

Compared (database-local ids and ingestion times left out): ``records`` (test_crash_resume's
snapshot), ``assets`` by slug, ``asset_mappings`` by (source_type, source_id, slug), and each
raw table by (source_key, content_hash). Exact totals (series counts, news counts) agree with
the table, and every run a kill left ``running`` was closed as ``interrupted``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from cryptoetl.stub.replay import FROZEN
from cryptoetl.stub.server import StubHandle, running_stub
from tests.e2e.conftest import query, run_worker, worker_env
from tests.e2e.test_crash_resume import _start_and_kill, snapshot, write_large_csv
from tests.pg import KEPT_TOTAL_SQL, TestDatabase, fresh_database, truncate_all

pytestmark = pytest.mark.slow

SEEDS = (20261201, 20261202)
KILLS_PER_SEED = 4
CSV_ROWS = 60_000
GECKO_PAGES = 5
PER_PAGE = 10
RAW_TABLES = ("raw_csv_rows", "raw_coinpaprika_tickers", "raw_coingecko_markets", "raw_rss_entries")
# Slow upstreams keep the API sources in flight while the CSV loads, so kills land in all four.
SLOW_UPSTREAMS = (
    "/api/v3/coins/markets:delay*always:delay_s=0.25;"
    "/v1/tickers:delay*always:delay_s=0.6;"
    "/rss:delay*always:delay_s=0.6"
)


def paged_fixtures(fixtures_dir: Path, target: Path) -> Path:
    """Our fixtures with CoinGecko spread over GECKO_PAGES full pages of PER_PAGE coins: pages
    beyond our two recorded ones are copies with their own ids, symbols and names."""
    shutil.copytree(fixtures_dir, target)
    gecko = target / "coingecko"
    coins = [
        coin
        for page in sorted(gecko.glob("markets_page_*.json"))
        for coin in json.loads(page.read_text())
    ]
    for page in range(1, GECKO_PAGES + 1):
        items = []
        for k in range(PER_PAGE):
            coin = dict(coins[((page - 1) * PER_PAGE + k) % len(coins)])
            if (page - 1) * PER_PAGE + k >= len(coins):
                coin["id"] = f"{coin['id']}-p{page}"
                coin["symbol"] = f"{coin['symbol']}{page}"
                coin["name"] = f"{coin['name']} P{page}"
            items.append(coin)
        (gecko / f"markets_page_{page}.json").write_text(json.dumps(items))
    return target


def tables(db: TestDatabase) -> dict[str, list[tuple[object, ...]]]:
    found = {
        "records": snapshot(db),
        "assets": query(db, "SELECT slug, symbol, normalized_name FROM assets ORDER BY slug"),
        "asset_mappings": query(
            db,
            "SELECT m.source_type, m.source_id, a.slug FROM asset_mappings m "
            "JOIN assets a ON a.id = m.asset_id ORDER BY 1, 2, 3",
        ),
    }
    for raw in RAW_TABLES:
        found[raw] = query(
            db, f"SELECT source_key, encode(content_hash, 'hex') FROM {raw} ORDER BY 1, 2"
        )
    return found


def _env(db: TestDatabase, stub: StubHandle, csv_path: Path) -> dict[str, str]:
    return worker_env(
        db,
        stub,
        str(csv_path),
        BATCH_SIZE="2000",
        COINGECKO_PAGES=str(GECKO_PAGES),
        COINGECKO_PER_PAGE=str(PER_PAGE),
    )


async def test_random_sigkills_then_resume_equal_a_clean_run(
    pg_server: str, fixtures_dir: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    write_large_csv(big, CSV_ROWS, seed=99)
    fixtures = paged_fixtures(fixtures_dir, tmp_path / "fixtures")
    async with running_stub(fixtures, faults=SLOW_UPSTREAMS, mode=FROZEN) as stub:
        with fresh_database(pg_server) as clean:
            result = await run_worker(_env(clean, stub, big))
            assert result.returncode == 0, result.stdout[-3000:]
            expected = tables(clean)
        gecko = [r for r in stub.requests if r.path.startswith("/api/v3/coins/markets")]
        assert len(gecko) == GECKO_PAGES
        assert len(expected["records"]) == (
            CSV_ROWS
            + len(expected["raw_coinpaprika_tickers"])
            + GECKO_PAGES * PER_PAGE
            + len(expected["raw_rss_entries"])
        )

        mid_load_kills = 0
        for seed in SEEDS:
            rng = random.Random(seed)
            with fresh_database(pg_server) as db:
                env = _env(db, stub, big)
                partial_at_last_kill = False
                for _ in range(KILLS_PER_SEED):
                    killed = await _start_and_kill(db, env, rng.uniform(0.0, 1.5))
                    stored = int(str(query(db, "SELECT count(*) FROM records")[0][0]))
                    partial_at_last_kill = killed and stored < len(expected["records"])
                    mid_load_kills += partial_at_last_kill
                    print(f"seed {seed}: killed={killed}, records stored {stored}")
                    if stored == len(expected["records"]):
                        truncate_all(db)  # the load got through: the next kill gets a new one
                final = await run_worker(env)
                assert final.returncode == 0, final.stdout[-3000:]
                got = tables(db)
                for name, rows in expected.items():
                    assert len(got[name]) == len(rows), (seed, name)
                    assert got[name] == rows, (seed, name)
                statuses = dict(query(db, "SELECT status, count(*) FROM runs GROUP BY status"))
                assert statuses.get("running", 0) == 0, statuses
                if partial_at_last_kill:  # its run was left running, the final run closed it
                    assert statuses.get("interrupted", 0) >= 1, statuses
                assert query(db, KEPT_TOTAL_SQL)[0][0] == len(got["records"])
                checkpoints = dict(query(db, "SELECT source_type, status FROM checkpoints"))
                assert set(checkpoints.values()) == {"success"}, checkpoints
        assert mid_load_kills >= len(SEEDS) * KILLS_PER_SEED // 2, (
            "most kills should land in the middle of the load"
        )
