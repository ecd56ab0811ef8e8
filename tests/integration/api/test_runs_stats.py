"""GET /stats, /runs and /compare-runs."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.api.conftest import ApiData, body, sql
from tests.pg import TestDatabase

Client = httpx.AsyncClient


async def test_stats(client: Client, database: TestDatabase, api_data: ApiData) -> None:
    response = await client.get("/stats")
    assert response.status_code == 200
    stats = body(response)
    assert [c["source_type"] for c in stats["checkpoints"]] == [
        "coingecko",
        "coinpaprika",
        "csv",
        "rss",
    ]
    assert stats["checkpoints"][0]["cursor"] == {"page": 1}
    recent = stats["recent_runs"]
    assert len(recent) == 20
    assert [r["started_at"] for r in recent] == sorted(
        (r["started_at"] for r in recent), reverse=True
    )
    summary = stats["summary"]
    assert summary["records_total"] == api_data.total
    by_kind = sql(database, "SELECT source_type, kind, count(*) FROM records GROUP BY 1, 2")
    for source, kind, n in by_kind:
        assert summary["records_by_source"][source][kind] == n
    runs, failed, processed, rejected, drift = sql(
        database,
        "SELECT count(*), count(*) FILTER (WHERE status = 'failed'), sum(processed), "
        "sum(rejected), sum(drift_events) FROM runs",
    )[0]
    assert summary["runs_total"] == runs
    assert summary["runs_failed"] == failed == 1
    assert summary["processed_total"] == processed
    assert summary["rejected_total"] == rejected == 1
    assert summary["drift_events_total"] == drift == 1
    assert summary["successful_sources"] == ["coingecko", "csv", "rss"]
    assert summary["failed_sources"] == ["coinpaprika"]


async def test_stats_limit(client: Client, api_data: ApiData) -> None:
    assert len(body(await client.get("/stats?limit=3"))["recent_runs"]) == 3
    assert len(body(await client.get("/stats?limit=100"))["recent_runs"]) == sum(
        len(r) for r in api_data.runs.values()
    )
    for bad in ("0", "101", "ten", "-1"):
        response = await client.get(f"/stats?limit={bad}")
        assert response.status_code == 400
        assert body(response)["detail"][0]["parameter"] == "limit"


async def test_runs(client: Client, api_data: ApiData) -> None:
    runs = body(await client.get("/runs?limit=5"))["data"]
    assert len(runs) == 5
    csv = body(await client.get("/runs?source=csv"))["data"]
    assert [r["id"] for r in csv] == [str(i) for i in reversed(api_data.runs["csv"])]
    assert csv[0]["duration_s"] == pytest.approx(1.2)
    assert csv[0]["inserted"] == 40
    paprika = body(await client.get("/runs?source=coinpaprika&limit=1"))["data"][0]
    assert paprika["status"] == "failed"
    assert paprika["error"] == "HTTPStatusError: 502 from upstream"
    for query, parameter in (
        ("limit=0", "limit"),
        ("limit=500", "limit"),
        ("source=ftx", "source"),
    ):
        response = await client.get(f"/runs?{query}")
        assert response.status_code == 400
        assert body(response)["detail"][0]["parameter"] == parameter


async def test_compare_latest_runs_flags_anomalies(client: Client, api_data: ApiData) -> None:
    response = await client.get("/compare-runs?source=coingecko")
    assert response.status_code == 200
    comparison = body(response)
    assert comparison["run_b"]["id"] == str(api_data.runs["coingecko"][-1])
    assert comparison["run_a"]["id"] == str(api_data.runs["coingecko"][-2])
    processed = comparison["differences"]["processed"]
    assert processed["a"] == 100
    assert processed["b"] == 24  # 23 records + 1 rejected
    assert processed["delta"] == -76
    assert processed["pct_change"] == -76.0
    assert comparison["differences"]["duration_s"]["b"] == pytest.approx(120.0)
    rules = {a["rule"]: a for a in comparison["anomalies"]}
    assert set(rules) == {"processed_outside_3_sigma", "duration_over_3x_median", "schema_drift"}
    band = rules["processed_outside_3_sigma"]
    assert band["expected_low"] < 100 < band["expected_high"]
    assert band["value"] == 24
    assert comparison["baseline"]["runs"] == 10
    assert comparison["baseline"]["mean_processed"] == pytest.approx(100.2)
    assert comparison["baseline"]["median_duration_s"] == pytest.approx(10.0)


async def test_compare_success_to_failure(client: Client, api_data: ApiData) -> None:
    comparison = body(await client.get("/compare-runs?source=coinpaprika"))
    rules = [a["rule"] for a in comparison["anomalies"]]
    assert rules == ["success_to_failure"]  # 22 processed is inside ±50% of 3 runs
    assert "502" in comparison["anomalies"][0]["message"]
    assert comparison["baseline"]["runs"] == 3


async def test_compare_by_ids(client: Client, api_data: ApiData) -> None:
    first, last = api_data.runs["rss"]
    comparison = body(await client.get(f"/compare-runs?run_a={first}&run_b={last}"))
    assert comparison["run_a"]["id"] == str(first)
    assert comparison["run_b"]["id"] == str(last)
    assert comparison["anomalies"] == []
    small = api_data.runs["csv"][0]
    few = body(
        await client.get(f"/compare-runs?run_a={small}&run_b={api_data.runs['coingecko'][-1]}")
    )
    assert "processed_outside_3_sigma" in {a["rule"] for a in few["anomalies"]}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("", "source"),
        ("source=bogus", "source"),
        (f"run_a={uuid.uuid4()}", "run_b"),
        (f"run_b={uuid.uuid4()}", "run_a"),
        ("run_a=nope&run_b=also-nope", "run_a"),
        (f"source=csv&run_a={uuid.uuid4()}&run_b={uuid.uuid4()}", "source"),
    ],
)
async def test_compare_invalid(
    client: Client, api_data: ApiData, query: str, parameter: str
) -> None:
    response = await client.get(f"/compare-runs?{query}")
    assert response.status_code == 400
    assert parameter in {d["parameter"] for d in body(response)["detail"]}


async def test_compare_unknown_run(client: Client, api_data: ApiData) -> None:
    response = await client.get(
        f"/compare-runs?run_a={api_data.runs['rss'][0]}&run_b={uuid.uuid4()}"
    )
    assert response.status_code == 404
    assert body(response)["error"] == "not_found"
    assert "run_b" in body(response)["message"]
