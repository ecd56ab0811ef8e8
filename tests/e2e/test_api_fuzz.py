"""Schemathesis against the served OpenAPI schema: every operation, a real Granian server on
loopback, a database filled by the real worker. No 5xx; every answer conforms to the schema
(status codes, content types, bodies, headers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cryptoetl.stub.server import running_stub
from tests.e2e.conftest import (
    ApiServer,
    query,
    run_worker,
    running_api,
    worker_env,
)
from tests.e2e.test_crash_resume import write_large_csv
from tests.pg import TestDatabase, truncate_all

MAX_EXAMPLES = 30


def rejects_invalid_input(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """negative_data_rejection, except for empty query values: the API documents (and tests)
    that an empty parameter means "not given", so ``?limit=`` is the default, not a 400."""
    if any(value in ("", [""]) for value in (case.query or {}).values()):
        return None
    result: bool | None = negative_data_rejection(ctx, response, case)
    return result


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    rejects_invalid_input,
]
# Every operation the API documents. A new endpoint fails test_every_operation_is_fuzzed
# until it is listed here, so nothing escapes the fuzzer.
OPERATIONS = [
    ("GET", "/data"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/stats"),
    ("GET", "/runs"),
    ("GET", "/compare-runs"),
    ("GET", "/assets"),
    ("GET", "/assets/{asset_id}"),
    ("GET", "/assets/{asset_id}/prices"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module")
async def fuzz_api(
    database: TestDatabase, fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """The session database filled by two worker passes over every source, served by Granian."""
    work = tmp_path_factory.mktemp("fuzz")
    big = work / "hourly.csv"
    write_large_csv(big, 3_000)
    truncate_all(database)
    async with running_stub(fixtures_dir) as stub:
        env = worker_env(database, stub, f"{fixtures_dir / 'csv'},{big}")
        for _ in range(2):  # two finished runs per source: /compare-runs?source= has data
            result = await run_worker(env)
            assert result.returncode == 0, result.stdout[-3000:]
    assert query(database, "SELECT count(DISTINCT source_type) FROM records")[0][0] == 4
    async with running_api(database.env(), work) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_api: ApiServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_api.base_url}/schema/openapi.json")


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    served = sorted(
        (op.method.upper(), op.path)
        for result in api_schema.get_all_operations()
        for op in [result.ok()]
    )
    assert served == sorted(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path"),
    [pytest.param(m, p, id=f"{m} {p}") for m, p in OPERATIONS],
)
def test_operation_conforms_to_its_schema(
    api_schema: schemathesis.BaseSchema, fuzz_api: ApiServer, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    statuses: dict[int, int] = {}
    log_start = len(fuzz_api.log())

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,  # the same examples on every run (seeded by the test)
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(
        case=st.one_of(
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
        )
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    fuzz()
    print(f"{method} {path}: statuses {dict(sorted(statuses.items()))}")
    assert statuses, "no request was sent"
    assert all(status < 500 for status in statuses), statuses
    assert "Traceback" not in fuzz_api.log()[log_start:]


# Hand-written hostile inputs, beyond what the schema-driven generator tends to produce: NUL
# bytes, invalid UTF-8 (percent-encoded), lone surrogates, huge and negative numbers, SQL, very
# long values. Each must be answered below 500, as JSON, with no stack trace.
HOSTILE = [
    "/data?search=%00",
    "/data?search=bitcoin%00",
    "/data?asset=%00",
    "/data?category=%00",
    "/data?cursor=%00",
    "/data?since=%00",
    "/data?source_type=%00",
    "/data?search=%FF%FE",
    "/data?search=%ED%A0%80",
    "/data?asset=%ED%A0%80",
    "/data?page=99999999999999999999999",
    "/data?page_size=-1",
    "/data?search=" + "a" * 5000,
    "/data?search=%27%3B%20DROP%20TABLE%20records%3B%20--",
    "/data?asset=999999999999999999",
    "/data?asset=9999999999999999999999",
    "/data?cursor=" + "A" * 200,
    "/data?since=9999-12-31T23:59:59Z",
    "/data?since=0001-01-01T00:00:00Z",
    "/data?until=0001-01-01T00:00:00%2B14:00",
    "/data?since=9999-12-31T23:59:59-14:00",
    "/assets?search=%00",
    "/assets?symbol=%00",
    "/assets?search=%ED%A0%80",
    "/assets?page=1000000&page_size=1000",
    "/assets/%00",
    "/assets/%ED%A0%80",
    "/assets/99999999999999999999",
    "/runs?source=%00",
    "/runs?limit=%00",
    "/compare-runs?run_a=%00&run_b=%00",
    "/compare-runs?source=%00",
    "/stats?limit=99999999999999999999",
]


@pytest.mark.parametrize(
    "path",
    HOSTILE,
)
async def test_hostile_input_is_a_clean_client_error(fuzz_api: ApiServer, path: str) -> None:
    import httpx

    log_start = len(fuzz_api.log())
    async with httpx.AsyncClient(base_url=fuzz_api.base_url, timeout=30) as client:
        response = await client.get(path)
    assert response.status_code < 500, (path, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in fuzz_api.log()[log_start:]
