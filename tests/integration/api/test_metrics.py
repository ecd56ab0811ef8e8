"""GET /metrics: valid Prometheus text (prometheus-client's own parser), pipeline series per
source read from the database at scrape time, request series with bounded labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from cryptoetl.api import metrics, status
from cryptoetl.api.request_metrics import METHODS
from tests.integration.api.conftest import ApiData, body, sql
from tests.integration.api.scenario import SOURCES, Recent, Run, fresh_everywhere, write_run

Client = object


def samples(text: str) -> list[Sample]:
    """Every sample, parsed as Prometheus parses it (raises on invalid text)."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(found: list[Sample], name: str, **labels: str) -> float | None:
    matches = [s.value for s in found if s.name == name and labels.items() <= s.labels.items()]
    assert len(matches) <= 1, (name, labels, matches)
    return matches[0] if matches else None


async def test_pipeline_series_after_a_run_and_after_a_failure(recent: Recent) -> None:
    db, engine, c = recent
    await fresh_everywhere(db, engine, data_age=timedelta(minutes=2))
    failure = Run("coinpaprika", "failed", timedelta(seconds=0.5), seconds=3.0, error="HTTP 502")
    await write_run(db, engine, failure)  # after the success
    response = await c.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(response.text)
    assert value(found, "cryptoetl_pipeline_up") == 1
    for source in SOURCES:
        states = {
            s.labels["status"]: s.value
            for s in found
            if s.name == "cryptoetl_source_status" and s.labels["source"] == source
        }
        expected = "failing" if source == "coinpaprika" else "healthy"
        assert states == {h: float(h == expected) for h in states}, source
        assert set(states) == {"healthy", "degraded", "failing", "disabled"}
        assert value(found, "cryptoetl_source_run_in_progress", source=source) == 0
        success_age = value(found, "cryptoetl_source_last_success_age_seconds", source=source)
        assert success_age is not None
        assert 0 <= success_age < 60
        data_age = value(found, "cryptoetl_source_newest_data_age_seconds", source=source)
        assert data_age == pytest.approx(120, abs=30)
        success = value(found, "cryptoetl_source_runs_last_24h", source=source, status="success")
        assert success == 1
        inserted = value(found, "cryptoetl_source_rows_last_24h", source=source, outcome="inserted")
        assert inserted == 3  # scenario: three records per run
    failed = value(found, "cryptoetl_source_runs_last_24h", source="coinpaprika", status="failed")
    assert failed == 1
    duration = value(found, "cryptoetl_source_last_run_duration_seconds", source="coinpaprika")
    assert duration == pytest.approx(3.0)
    threshold = "cryptoetl_source_freshness_threshold_seconds"
    assert value(found, threshold, source="coingecko") == 900
    assert value(found, threshold, source="csv") is None  # never stale: no threshold to show
    # The figures are the health endpoint's own.
    health = body(await c.get("/health"))
    assert health["sources"]["coinpaprika"]["health"] == "failing"


async def test_a_run_in_progress_and_a_frozen_upstream(recent: Recent) -> None:
    db, engine, c = recent
    await fresh_everywhere(db, engine)
    sql(
        db,
        "INSERT INTO runs (id, source_type, worker_id) VALUES (gen_random_uuid(), 'rss', 'w')",
    )
    frozen = "UPDATE market_series SET last_ts = now() - interval '3 days' WHERE source_type = %s"
    sql(db, frozen, "coingecko")
    found = samples((await c.get("/metrics")).text)
    assert value(found, "cryptoetl_source_run_in_progress", source="rss") == 1
    assert value(found, "cryptoetl_source_runs_last_24h", source="rss", status="running") == 1
    age = value(found, "cryptoetl_source_newest_data_age_seconds", source="coingecko")
    assert age == pytest.approx(3 * 86_400, abs=60)
    assert value(found, "cryptoetl_source_status", source="coingecko", status="degraded") == 1


async def test_never_run_sources_report_only_what_exists(recent: Recent) -> None:
    _, _, c = recent
    found = samples((await c.get("/metrics")).text)
    for source in SOURCES:
        assert value(found, "cryptoetl_source_status", source=source, status="degraded") == 1
        assert value(found, "cryptoetl_source_last_success_age_seconds", source=source) is None
        assert value(found, "cryptoetl_source_newest_data_age_seconds", source=source) is None
        runs = value(found, "cryptoetl_source_runs_last_24h", source=source, status="success")
        assert runs == 0


async def test_request_labels_come_from_fixed_sets(client: object, api_data: ApiData) -> None:
    """Client-chosen method names do not grow the series (issue 14.8)."""
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    for k in range(30):
        await client.request(f"BREW{k}", "/data")
    await client.request("GET", "/data?page_size=1")
    found = samples((await client.get("/metrics")).text)
    methods = {s.labels["method"] for s in found if s.name == "cryptoetl_http_requests_total"}
    assert methods <= METHODS | {"OTHER"}
    assert not [m for m in methods if m.startswith("BREW")]
    other = [
        s.value
        for s in found
        if s.name == "cryptoetl_http_requests_total" and s.labels["method"] == "OTHER"
    ]
    assert sum(other) >= 30
    assert len(other) <= 2  # one series per route and status, however many method names
    assert not [s for s in found if "pid" in s.labels]
    assert not [s for s in found if s.name.endswith("_created")]
    assert value(found, "cryptoetl_http_requests_in_flight") == 1  # this scrape


async def test_metrics_scrape_reads_no_observation_table(recent: Recent) -> None:
    """Bounded at scrape time: the plans of the pipeline statements touch the bookkeeping tables
    and the kept series bounds only, never the observations."""
    db, engine, _ = recent
    await fresh_everywhere(db, engine)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(db.reader_url)
    try:
        for statement, args in (
            (status.SOURCE_FACTS, (list(SOURCES), now)),
            (metrics.RUNS_SINCE, (list(SOURCES), now - metrics.WINDOW)),
        ):
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {statement}", *args))
            assert "market_observations" not in plan, plan
            assert "runs" in plan
    finally:
        await conn.close()
