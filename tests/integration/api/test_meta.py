"""Request ids, access log, metrics, OpenAPI and docs, error answers for unknown routes."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import httpx
import pytest

from cryptoetl.api import data as data_module
from cryptoetl.api.app import create_app
from cryptoetl.config import load_settings
from cryptoetl.logs import JsonFormatter
from tests.integration.api.conftest import ApiData, api_client, body
from tests.pg import TestDatabase

Client = httpx.AsyncClient
ENDPOINTS = [
    "/data",
    "/health",
    "/health/live",
    "/stats",
    "/runs",
    "/compare-runs",
    "/assets",
    "/assets/{asset_id}",
    "/metrics",
]


@pytest.mark.parametrize("path", ["/data?page_size=1", "/stats", "/assets/bitcoin", "/nope"])
async def test_client_request_id_is_echoed(client: Client, api_data: ApiData, path: str) -> None:
    response = await client.get(path, headers={"X-Request-ID": "trace-42.a_b-C"})
    assert response.headers["x-request-id"] == "trace-42.a_b-C"
    assert "trace-42.a_b-C" in response.text  # in the body too


@pytest.mark.parametrize("given", ["has space", "a/b", "x" * 129, "", "é"])
async def test_bad_request_id_is_replaced(client: Client, api_data: ApiData, given: str) -> None:
    response = await client.get("/data?page_size=1", headers={b"X-Request-ID": given.encode()})
    issued = response.headers["x-request-id"]
    assert uuid.UUID(issued).version == 4
    assert body(response)["metadata"]["request_id"] == issued


async def test_every_response_has_an_id(client: Client, api_data: ApiData) -> None:
    for response in (
        await client.get("/data?page=0"),
        await client.get("/no/such/route"),
        await client.post("/data"),
        await client.get("/assets/no-such-coin"),
    ):
        uuid.UUID(response.headers["x-request-id"])
        payload = body(response)
        assert payload["request_id"] == response.headers["x-request-id"]
        assert payload["error"] in {"invalid_parameters", "not_found", "method_not_allowed"}


async def test_unknown_route_is_json_404(client: Client, api_data: ApiData) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert body(response)["error"] == "not_found"
    response = await client.post("/data")
    assert response.status_code == 405


async def test_access_log_line(
    client: Client, api_data: ApiData, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cryptoetl.api.access")
    await client.get("/data?page_size=2", headers={"X-Request-ID": "log-check-1"})
    records = [r for r in caplog.records if getattr(r, "request_id", None) == "log-check-1"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["method"] == "GET"
    assert line["path"] == "/data"
    assert line["status"] == 200
    assert line["duration_ms"] > 0
    assert line["request_id"] == "log-check-1"
    assert line["logger"] == "cryptoetl.api.access"


async def test_metrics_exposition(client: Client, api_data: ApiData) -> None:
    await client.get("/data?page_size=1")
    await client.get("/assets/bitcoin")
    await client.get("/data?page=0")
    await client.get("/definitely/not/here")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "# TYPE cryptoetl_http_requests_total counter" in text
    assert "# TYPE cryptoetl_http_request_duration_seconds histogram" in text
    series = _samples(text)
    data_ok = series[("cryptoetl_http_requests_total", "/data", "200")]
    assert data_ok >= 1
    assert series[("cryptoetl_http_requests_total", "/data", "400")] >= 1
    assert ("cryptoetl_http_requests_total", "/assets/{asset_id}", "200") in series
    assert ("cryptoetl_http_requests_total", "unmatched", "404") in series
    inf = series[("cryptoetl_http_request_duration_seconds_bucket+Inf", "/data", "200")]
    assert inf == series[("cryptoetl_http_request_duration_seconds_count", "/data", "200")]
    assert inf == data_ok


def _samples(text: str) -> dict[tuple[str, str, str], float]:
    found: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        name, rest = line.split("{", 1)
        labels_text, value = rest.rsplit("} ", 1)
        labels = dict(item.split("=", 1) for item in labels_text.split('",') if "=" in item)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if name.endswith("_bucket"):
            if labels.get("le") != "+Inf":
                continue
            name += "+Inf"
        if "route" in labels:
            found[(name, labels["route"], labels["status"])] = float(value)
    return found


async def test_openapi_schema_and_docs(client: Client, api_data: ApiData) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = json.loads(response.text)
    assert schema["openapi"].startswith("3.")
    assert set(ENDPOINTS) <= set(schema["paths"])
    assert "/docs" not in schema["paths"]
    parameters = {p["name"]: p for p in schema["paths"]["/data"]["get"]["parameters"]}
    assert {
        "page",
        "page_size",
        "source_type",
        "kind",
        "asset",
        "category",
        "search",
        "since",
        "until",
        "cursor",
    } <= set(parameters)
    assert parameters["page_size"]["schema"]["type"] == "integer"
    assert parameters["page_size"]["schema"]["maximum"] == 1000
    responses = schema["paths"]["/data"]["get"]["responses"]
    assert {"200", "400", "503"} <= set(responses)
    assert "total_is_estimate" in json.dumps(schema["components"])
    # Descriptions are CommonMark: the modules' reST (``code``, :class:`X`) must not show.
    described = re.findall(r'"description": "((?:[^"\\]|\\.)*)"', json.dumps(schema))
    assert any("`GET /health`" in text for text in described)
    assert not [text for text in described if "``" in text or re.search(r":[a-z]+:`", text)]


async def test_docs_work_offline_under_a_self_only_csp(client: Client, api_data: ApiData) -> None:
    """Swagger UI's files are served by the API (no CDN), and the page's CSP allows nothing
    else: every script, style and fetch it names is ours."""
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert referenced
    assert all(url.startswith("/docs/") for url in referenced)
    assert "<script>" not in page.text  # no inline script: the initializer is a file
    for url in referenced:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100
    init = (await client.get("/docs/init.js")).text
    assert '"/schema/openapi.json"' in init
    assert (await client.get("/docs/assets/swagger-editor.js")).status_code == 404


async def test_internal_error_leaks_nothing(
    database: TestDatabase, api_data: ApiData, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> Any:
        raise RuntimeError(f"boom at {database.admin_url}")

    monkeypatch.setattr(data_module, "fetch_page", broken)
    async with api_client(create_app(load_settings(database.env()))) as c:
        response = await c.get("/data")
    assert response.status_code == 500
    payload = body(response)
    assert payload == {
        "error": "internal_error",
        "message": "internal server error",
        "request_id": response.headers["x-request-id"],
        "detail": [],
    }
    assert "boom" not in response.text
