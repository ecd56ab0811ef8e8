"""HEAD on every GET route, Allow on every 405, unknown query parameters refused with a 400 that
names them, and empty parameters meaning "not given", as the OpenAPI schema says (issue 14.12)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.api.conftest import ApiData, body

Client = httpx.AsyncClient
GET_ROUTES = [
    "/health",
    "/health/live",
    "/stats",
    "/runs?source=csv",
    "/compare-runs?source=coingecko",
    "/assets",
    "/assets/bitcoin",
    "/assets/bitcoin/prices",
    "/data?page_size=2",
    "/metrics",
    "/",
    "/ui/assets",
    "/ui/assets/bitcoin",
    "/static/dashboard.css",
    "/schema/openapi.json",
]


@pytest.mark.parametrize("path", GET_ROUTES)
async def test_head_answers_as_get_without_a_body(
    client: Client, api_data: ApiData, path: str
) -> None:
    get = await client.get(path)
    head = await client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["x-request-id"]
    assert int(head.headers["content-length"]) > 0  # what the GET would send


async def test_head_is_counted_as_head(client: Client, api_data: ApiData) -> None:
    await client.head("/stats")
    text = (await client.get("/metrics")).text
    assert 'cryptoetl_http_requests_total{method="HEAD",route="/stats",status="200"}' in text


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/data"), ("DELETE", "/health"), ("PUT", "/ui/assets"), ("PATCH", "/assets/1")],
)
async def test_405_says_which_methods_are_allowed(
    client: Client, api_data: ApiData, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed
    assert method not in allowed
    assert body(response)["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/health?verbose=1", "verbose"),
        ("/stats?limt=5", "limt"),
        ("/runs?sources=csv", "sources"),
        ("/compare-runs?source=csv&baseline=5", "baseline"),
        ("/assets?q=btc", "q"),
        ("/assets/bitcoin?days=7", "days"),
        ("/metrics?name[]=x", "name[]"),
    ],
)
async def test_unknown_parameters_are_named_in_a_400(
    client: Client, api_data: ApiData, path: str, parameter: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 400
    payload = body(response)
    assert payload["error"] == "invalid_parameters"
    assert parameter in {d["parameter"] for d in payload["detail"]}


@pytest.mark.parametrize(
    ("path", "parameter"),
    [("/?refresh=0", "refresh"), ("/ui/assets?q=btc", "q"), ("/ui/assets/bitcoin?day=7", "day")],
)
async def test_unknown_parameters_of_the_dashboard_are_named_on_an_html_400(
    client: Client, api_data: ApiData, path: str, parameter: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert f"{parameter} is not a parameter of this endpoint" in response.text


async def test_empty_parameters_mean_not_given(client: Client, api_data: ApiData) -> None:
    assert len(body(await client.get("/runs?limit=&source="))["data"]) == 20
    assert len(body(await client.get("/stats?limit="))["recent_runs"]) == 20
    assert (
        body(await client.get("/assets?page=&page_size=&search=&symbol="))["metadata"][
            "pagination"
        ]["page_size"]
        == 50
    )
    response = await client.get("/compare-runs?source=&run_a=&run_b=")
    assert response.status_code == 400  # nothing given: source, or run_a and run_b, is needed
    assert body(response)["detail"][0]["message"] == "give source, or run_a and run_b"


async def test_the_schema_says_what_empty_values_mean(client: Client, api_data: ApiData) -> None:
    schema = json.loads((await client.get("/schema/openapi.json")).text)

    def parameter(path: str, name: str) -> dict[str, object]:
        found = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name]
        assert len(found) == 1, (path, name)
        return found[0]  # type: ignore[no-any-return]

    for path, name in (("/runs", "limit"), ("/stats", "limit"), ("/assets", "page")):
        spec = parameter(path, name)
        assert "An empty value means the parameter is not given" in str(spec["description"])
        integer, empty = spec["schema"]["anyOf"]  # type: ignore[index]
        assert integer["type"] == "integer"
        assert empty == {"type": "string", "maxLength": 0}
    assert parameter("/assets", "page")["schema"]["anyOf"][0]["maximum"] == 1_000_000  # type: ignore[index]
    for path in ("/runs", "/compare-runs"):
        assert "" in parameter(path, "source")["schema"]["enum"]  # type: ignore[index,operator]
