"""The live demo end to end: `cryptoetl worker --once` against the live stub, twice across one
time step, stores price history and fresh news (what `just dev` shows on the dashboard)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptoetl.stub import Live, running_stub
from tests.e2e.conftest import query, run_worker, worker_env
from tests.pg import TestDatabase

STEP_S = 60
T0 = 1_760_000_040  # a step's start (2025-10-09T08:54:00Z)
API_SOURCES = ("coingecko", "coinpaprika")
# Our fixtures: two CoinGecko pages of 10 coins, 12 CoinPaprika tickers, 8 entries in feed.xml.
COINS = {"coingecko": 20, "coinpaprika": 12}
FEED_ENTRIES = 8


async def test_two_runs_across_a_step_store_two_observations_per_coin(
    clean_db: TestDatabase, fixtures_dir: Path, csv_dir: Path
) -> None:
    # The stub's clock is ours: one step, then the next, without waiting a minute in between
    # (and a fixed time, so the walk's prices are the same on every run of the test).
    clock = [float(T0)]
    first_step = datetime.fromtimestamp(clock[0], UTC)
    second_step = first_step + timedelta(seconds=STEP_S)
    mode = Live(seed=11, step_s=STEP_S, clock=lambda: clock[0])
    async with running_stub(fixtures_dir, mode=mode) as stub:
        env = worker_env(
            clean_db,
            stub,
            str(csv_dir),
            ENABLED_SOURCES="coingecko,coinpaprika,rss",
            COINGECKO_PER_PAGE="10",  # a full first page: page 2 is fetched too
        )
        first = await run_worker(env)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        clock[0] += STEP_S
        second = await run_worker(env)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    series = query(
        clean_db,
        "SELECT source_type, series_id, count(*), min(source_timestamp), max(source_timestamp),"
        " count(DISTINCT price) FROM records WHERE source_type IN ('coingecko', 'coinpaprika')"
        " GROUP BY 1, 2",
    )
    for source in API_SOURCES:
        ours = [row[2:] for row in series if row[0] == source]
        assert len(ours) == COINS[source], source
        # Two observations per coin: one per step, at that step, at two different prices.
        assert ours == [(2, first_step, second_step, 2)] * COINS[source], source

    runs = query(
        clean_db,
        "SELECT source_type, inserted, updated, rejected, drift_events FROM runs"
        " WHERE status = 'success' ORDER BY started_at",
    )
    second_runs = {row[0]: row[1:] for row in runs}  # the last run of each source wins
    for source in API_SOURCES:
        assert second_runs[source] == (COINS[source], 0, 0, 0), source
    # The feed moved with the step: every entry updated, none new, the newest one recent.
    assert second_runs["rss"] == (0, FEED_ENTRIES, 0, 0)
    [(newest,)] = query(
        clean_db, "SELECT max(source_timestamp) FROM records WHERE source_type = 'rss'"
    )
    assert second_step - timedelta(hours=1) < newest <= second_step
