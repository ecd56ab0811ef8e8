"""The worker end to end: stub upstream + `cryptoetl worker --once` against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from cryptoetl.stub.server import StubHandle
from tests.e2e.conftest import (
    SENTINEL_GECKO_KEY,
    SENTINEL_PAPRIKA_KEY,
    query,
    run_worker,
    worker_env,
)
from tests.pg import KEPT_TOTAL_SQL, TestDatabase

SOURCES = ("coingecko", "coinpaprika", "csv", "rss")


def _last_runs(db: TestDatabase) -> dict[str, tuple[object, ...]]:
    rows = query(
        db,
        "SELECT DISTINCT ON (source_type) source_type, status, processed, inserted, updated, "
        "unchanged, rejected, error FROM runs ORDER BY source_type, started_at DESC",
    )
    return {str(r[0]): r[1:] for r in rows}


async def test_full_pass_then_idempotent_rerun_then_append(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path
) -> None:
    env = worker_env(clean_db, stub, str(csv_dir))
    first = await run_worker(env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    runs = _last_runs(clean_db)
    assert set(runs) == set(SOURCES)
    for source, (status, processed, inserted, *_rest) in runs.items():
        assert status == "success", (source, runs[source])
        assert processed, (source, runs[source])
        assert inserted, (source, runs[source])
    per_source = dict(query(clean_db, "SELECT source_type, count(*) FROM records GROUP BY 1"))
    assert set(per_source) == set(SOURCES)
    assert dict(query(clean_db, "SELECT kind, count(*) > 0 FROM records GROUP BY 1")) == {
        "market": True,
        "news": True,
    }
    for raw in (
        "raw_csv_rows",
        "raw_coinpaprika_tickers",
        "raw_coingecko_markets",
        "raw_rss_entries",
    ):
        assert query(clean_db, f"SELECT count(*) FROM {raw}")[0][0] > 0, raw
    checkpoint_status = dict(query(clean_db, "SELECT source_type, status FROM checkpoints"))
    assert checkpoint_status == dict.fromkeys(SOURCES, "success")
    # The exact totals kept by triggers agree with the table.
    assert query(clean_db, KEPT_TOTAL_SQL)[0][0] == sum(per_source.values())

    # Second run: nothing new upstream, so nothing is written.
    second = await run_worker(env)
    assert second.returncode == 0, second.stdout[-3000:]
    for source, (status, _processed, inserted, updated, *_rest) in _last_runs(clean_db).items():
        assert (status, inserted, updated) == ("success", 0, 0), source
    assert (
        dict(query(clean_db, "SELECT source_type, count(*) FROM records GROUP BY 1")) == per_source
    )

    # Appending to a CSV: only the appended rows are read next time.
    target = sorted(csv_dir.glob("*.csv"))[0]
    before = query(clean_db, "SELECT count(*) FROM records WHERE source_type = 'csv'")[0][0]
    appended = _append_rows(target, 3)
    third = await run_worker(env, "--source", "csv")
    assert third.returncode == 0, third.stdout[-3000:]
    status, processed, inserted, updated, *_ = _last_runs(clean_db)["csv"]
    assert (status, processed, inserted, updated) == ("success", appended, appended, 0)
    after = query(clean_db, "SELECT count(*) FROM records WHERE source_type = 'csv'")[0][0]
    assert after == before + appended

    # Keys were sent to the upstreams the way each expects, and never printed.
    headers = [r.headers for r in stub.requests]
    assert any(h.get("Authorization") == SENTINEL_PAPRIKA_KEY for h in headers)
    assert any(h.get("x-cg-demo-api-key") == SENTINEL_GECKO_KEY for h in headers)
    for result in (first, second, third):
        for secret in (SENTINEL_GECKO_KEY, SENTINEL_PAPRIKA_KEY):
            assert secret not in result.stdout + result.stderr


def _append_rows(path: Path, count: int) -> int:
    """Append `count` rows dated after the file's dates, in the file's own layout."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    template = lines[-1].split(",")
    date_col = next(i for i, h in enumerate(header) if h.strip().lower() in ("date", "timestamp"))
    new_lines = []
    for i in range(count):
        row = list(template)
        row[date_col] = f"2031-01-{i + 1:02d}"
        new_lines.append(",".join(row))
    text = path.read_text(encoding="utf-8-sig")
    with path.open("a", encoding="utf-8") as fh:
        if not text.endswith("\n"):
            fh.write("\n")
        fh.write("\n".join(new_lines) + "\n")
    return count


async def test_bitcoin_is_one_asset_across_sources(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path
) -> None:
    result = await run_worker(worker_env(clean_db, stub, str(csv_dir)))
    assert result.returncode == 0, result.stdout[-3000:]
    mappings = query(
        clean_db,
        "SELECT m.source_type, m.match_method FROM asset_mappings m JOIN assets a "
        "ON a.id = m.asset_id WHERE a.slug = 'bitcoin' ORDER BY 1",
    )
    assert [m[0] for m in mappings] == ["coingecko", "coinpaprika", "csv"]
    # Every market row of a bitcoin id points at that one asset.
    ids = query(
        clean_db,
        "SELECT DISTINCT asset_id FROM records WHERE kind = 'market' AND "
        "(source_id IN ('bitcoin', 'btc-bitcoin') OR (source_type = 'csv' AND symbol = 'BTC'))",
    )
    assert len(ids) == 1
    # Coins sharing a ticker stay apart.
    shared = query(
        clean_db,
        "SELECT symbol, count(*) FROM assets GROUP BY symbol HAVING count(*) > 1",
    )
    assert shared, "fixtures include two different coins with one ticker"
    # News headlines are linked to the assets they name, never stored as coins.
    news_mentions = query(
        clean_db,
        "SELECT count(*) FROM records r JOIN assets a ON a.id = ANY (r.mentioned_asset_ids) "
        "WHERE r.kind = 'news' AND a.slug = 'bitcoin'",
    )
    assert news_mentions[0][0] > 0
    assert (
        query(
            clean_db, "SELECT count(*) FROM records WHERE kind = 'news' AND asset_id IS NOT NULL"
        )[0][0]
        == 0
    )


async def test_injected_failure_then_resume_without_loss_or_duplicates(
    clean_db: TestDatabase, stub: StubHandle, csv_dir: Path
) -> None:
    env = worker_env(clean_db, stub, str(csv_dir), BATCH_SIZE="5", ETL_FAIL_AFTER="csv:10")
    failed = await run_worker(env, "--source", "csv")
    assert failed.returncode == 1
    status, processed, *_rest, error = _last_runs(clean_db)["csv"]
    assert status == "failed"
    assert processed == 10
    assert "ETL_FAIL_AFTER" in str(error)
    partial = query(clean_db, "SELECT count(*) FROM records WHERE source_type = 'csv'")[0][0]
    assert partial > 0

    env.pop("ETL_FAIL_AFTER")
    resumed = await run_worker(env, "--source", "csv")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    total = query(clean_db, "SELECT count(*) FROM records WHERE source_type = 'csv'")[0][0]
    runs = query(clean_db, "SELECT sum(processed) FROM runs WHERE source_type = 'csv'")[0][0]
    # Resumed from the checkpoint: together the two runs looked at each row once.
    rows_in_files = sum(
        len(p.read_text(encoding="utf-8-sig").strip().splitlines()) - 1
        for p in csv_dir.glob("*.csv")
    )
    assert runs == rows_in_files
    assert total > partial
