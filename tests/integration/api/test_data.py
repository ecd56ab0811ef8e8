"""GET /data: shape, filters, totals, offset and keyset pagination, validation, injection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from cryptoetl.api.data.query import MAX_OFFSET
from cryptoetl.api.schemas import DataPage
from tests.integration.api.conftest import SQLI, ApiData, body, sql
from tests.pg import TestDatabase

Client = httpx.AsyncClient

ITEM_KEYS = {
    "id",
    "source_type",
    "source_id",
    "kind",
    "title",
    "description",
    "value",
    "category",
    "tags",
    "source_timestamp",
    "metadata",
    "price_usd",
    "market_cap_usd",
    "volume_24h_usd",
    "change_24h_pct",
    "rank",
    "symbol",
    "url",
    "author",
    "asset",
    "mentioned_assets",
    "series",
    "quote",
    "price",
    "open",
    "high",
    "low",
    "volume_base",
    "volume_quote",
    "market_cap",
    "change_pct",
}


MENTIONS = (
    "(asset_id = (SELECT id FROM assets WHERE slug = '{slug}') "
    "OR (SELECT id FROM assets WHERE slug = '{slug}') = ANY(mentioned_asset_ids))"
)


def ordered_ids(db: TestDatabase, where: str = "TRUE", *params: Any) -> list[int]:
    rows = sql(
        db, f"SELECT id FROM records WHERE {where} ORDER BY source_timestamp DESC, id DESC", *params
    )
    return [r[0] for r in rows]


def count(db: TestDatabase, where: str = "TRUE", *params: Any) -> int:
    return int(sql(db, f"SELECT count(*) FROM records WHERE {where}", *params)[0][0])


async def get_page(client: Client, **params: Any) -> Any:
    response = await client.get("/data", params=params)
    assert response.status_code == 200, response.text
    return body(response)


async def walk(client: Client, **params: Any) -> list[dict[str, Any]]:
    """Follow next_cursor from the first page to the end."""
    page = await get_page(client, **params)
    items = list(page["data"])
    pages = 1
    while (cursor := page["metadata"]["pagination"]["next_cursor"]) is not None:
        page = await get_page(client, **params, cursor=cursor)
        assert page["metadata"]["pagination"]["page"] is None
        items += page["data"]
        pages += 1
        assert pages < 500, "cursor walk does not end"
    return items


# --- shape ---------------------------------------------------------------------------------------


async def test_first_page_shape_and_exact_total(client: Client, api_data: ApiData) -> None:
    response = await client.get("/data")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    page = msgspec.json.decode(response.content, type=DataPage)  # every field, every type
    raw = body(response)
    assert set(raw) == {"data", "metadata"}
    assert all(set(item) == ITEM_KEYS for item in raw["data"])
    meta = raw["metadata"]
    assert meta["request_id"] == response.headers["x-request-id"]
    assert meta["api_latency_ms"] >= 0
    assert meta["filters_applied"] == {}
    pagination = meta["pagination"]
    assert pagination == {
        "page": 1,
        "page_size": 50,
        "total_records": api_data.total,
        "total_pages": -(-api_data.total // 50),
        "next_cursor": pagination["next_cursor"],
        "total_is_estimate": False,
    }
    assert isinstance(pagination["next_cursor"], str)
    assert len(page.data) == 50
    assert all(item.source_timestamp.tzinfo is not None for item in page.data)
    assert all(item["source_timestamp"].endswith("Z") for item in raw["data"])


async def test_newest_first_with_id_tie_break(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    page = await get_page(client, page_size=1000)
    assert [i["id"] for i in page["data"]] == ordered_ids(database)
    assert page["metadata"]["pagination"]["next_cursor"] is None


async def test_market_and_news_items(client: Client, api_data: ApiData) -> None:
    market = (await get_page(client, source_type="coingecko", asset="bitcoin"))["data"]
    assert len(market) == 1
    btc = market[0]
    assert btc["kind"] == "market"
    assert btc["title"] == "Bitcoin"  # the coin name
    assert btc["description"] is None
    assert btc["value"] == btc["price_usd"] == 50_000
    assert btc["market_cap_usd"] == 9.8e11
    assert btc["rank"] == 1
    assert btc["asset"] == {
        "id": api_data.btc_id,
        "slug": "bitcoin",
        "symbol": "BTC",
        "name": "Bitcoin",
    }
    assert btc["metadata"] == {"last_updated": "2025-03-01T12:00:00Z"}
    assert btc["source_timestamp"] == "2025-03-01T12:00:00Z"

    news = (await get_page(client, kind="news", page_size=100))["data"]
    assert len(news) == 25
    first = news[0]
    assert first["value"] is None
    assert first["title"].startswith("Bitcoin tops")
    assert first["description"].startswith("Report 0")
    assert first["url"] == "https://news.example/0"
    assert first["tags"] == ["crypto"]
    assert first["asset"] is None
    assert [a["slug"] for a in first["mentioned_assets"]] == ["bitcoin"]
    assert first["mentioned_assets"][0]["id"] == api_data.btc_id
    mentioning_btc = [n for n in news if any(a["slug"] == "bitcoin" for a in n["mentioned_assets"])]
    assert len(mentioning_btc) == 10


# --- filters and exact totals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"source_type": "coingecko"}, "source_type = 'coingecko'"),
        ({"source_type": "coingecko,csv"}, "source_type IN ('coingecko', 'csv')"),
        ({"source_type": ["rss", "csv"]}, "source_type IN ('rss', 'csv')"),
        ({"kind": "news"}, "kind = 'news'"),
        ({"kind": "market"}, "kind = 'market'"),
        # An asset's observations and the news that mention it.
        ({"asset": "bitcoin"}, MENTIONS.format(slug="bitcoin")),
        ({"asset": "btc"}, MENTIONS.format(slug="bitcoin")),
        ({"asset": "ETH"}, MENTIONS.format(slug="ethereum")),
        (
            {"asset": "bitcoin", "kind": "news"},
            MENTIONS.format(slug="bitcoin") + " AND kind = 'news'",
        ),
        ({"quote": "usd"}, "quote = 'USD'"),
        ({"venue": "testex", "interval": "1h"}, "venue = 'testex' AND interval = '1h'"),
        ({"interval": "snapshot", "source_type": "coinpaprika"}, "source_type = 'coinpaprika'"),
        ({"quote": "unknown"}, "FALSE"),
        (
            {"asset": "bitcoin", "source_type": "csv", "kind": "market"},
            "asset_id = (SELECT id FROM assets WHERE slug = 'bitcoin') AND source_type = 'csv'",
        ),
        ({"asset": "no-such-coin"}, "FALSE"),
    ],
)
async def test_exact_totals_equal_count(
    client: Client, database: TestDatabase, api_data: ApiData, params: Any, where: str
) -> None:
    page = await get_page(client, page_size=1000, **params)
    pagination = page["metadata"]["pagination"]
    assert pagination["total_is_estimate"] is False
    assert pagination["total_records"] == count(database, where)
    assert [i["id"] for i in page["data"]] == ordered_ids(database, where)


async def test_asset_by_numeric_id(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    page = await get_page(client, asset=str(api_data.btc_id), page_size=1000)
    assert page["metadata"]["pagination"]["total_records"] == count(
        database, MENTIONS.format(slug="bitcoin")
    )
    assert {
        (i["asset"] or next(a for a in i["mentioned_assets"] if a["slug"] == "bitcoin"))["id"]
        for i in page["data"]
    } == {api_data.btc_id}
    assert page["metadata"]["filters_applied"] == {"asset": str(api_data.btc_id)}


async def test_category_is_estimated(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    first = await get_page(client, category="policy", page_size=2)
    assert first["metadata"]["pagination"]["total_is_estimate"] is True
    page = await get_page(client, category="policy", page_size=1000)
    assert {i["category"] for i in page["data"]} == {"policy"}
    assert len(page["data"]) == count(database, "category = 'policy'")
    # The page that reaches the end proves the total: exact, and it says so.
    assert page["metadata"]["pagination"]["total_records"] == len(page["data"])
    assert page["metadata"]["pagination"]["total_is_estimate"] is False
    assert page["metadata"]["filters_applied"] == {"category": "policy"}


async def test_search_is_full_text_and_estimated(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    page = await get_page(client, search="bitcoin", page_size=1000)
    where = "search_vector @@ websearch_to_tsquery('english', 'bitcoin')"
    assert [i["id"] for i in page["data"]] == ordered_ids(database, where)
    assert all(
        "bitcoin" in (i["title"] + " " + (i["description"] or "")).lower() for i in page["data"]
    )
    pagination = page["metadata"]["pagination"]
    # A single short page proves the count: exact, not an estimate.
    assert pagination["total_is_estimate"] is False
    assert pagination["total_records"] == len(page["data"])
    partial = await get_page(client, search="bitcoin", page_size=1)
    assert partial["metadata"]["pagination"]["total_is_estimate"] is True
    phrase = await get_page(client, search='"miners adjust" -halving')
    assert phrase["data"] == []


async def test_since_until(client: Client, database: TestDatabase, api_data: ApiData) -> None:
    # Naive means UTC; until is exclusive.
    page = await get_page(
        client, since="2025-03-01T11:00:00", until="2025-03-01T12:00:00", page_size=1000
    )
    where = (
        "source_timestamp >= '2025-03-01T11:00:00Z' AND source_timestamp < '2025-03-01T12:00:00Z'"
    )
    assert [i["id"] for i in page["data"]] == ordered_ids(database, where)
    assert page["data"], "the window holds rows"
    assert page["metadata"]["pagination"]["total_is_estimate"] is False  # the last page
    partial = await get_page(
        client, since="2025-03-01T11:00:00", until="2025-03-01T12:00:00", page_size=1
    )
    assert partial["metadata"]["pagination"]["total_is_estimate"] is True
    applied = page["metadata"]["filters_applied"]
    assert applied["since"] == "2025-03-01T11:00:00Z"
    # The same instant written with an offset; a '+' sent unencoded arrives as a space.
    other = await client.get(
        "/data?since=2025-03-01T13:00:00 02:00&until=2025-03-01T12:00:00Z&page_size=1000"
    )
    assert [i["id"] for i in body(other)["data"]] == ordered_ids(database, where)
    day = await get_page(client, since="2025-03-01", page_size=1000)
    assert all(i["source_timestamp"] >= "2025-03-01" for i in day["data"])


# --- pagination ----------------------------------------------------------------------------------


async def test_offset_pages_follow_the_order(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    expected = ordered_ids(database)
    seen: list[int] = []
    for n in range(1, -(-len(expected) // 13) + 1):
        page = await get_page(client, page=n, page_size=13)
        assert page["metadata"]["pagination"]["page"] == n
        seen += [i["id"] for i in page["data"]]
    assert seen == expected
    beyond = await get_page(client, page=1000, page_size=13)
    assert beyond["data"] == []
    assert beyond["metadata"]["pagination"]["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({}, "TRUE"),
        ({"source_type": "rss"}, "source_type = 'rss'"),
        (
            {"asset": "btc", "kind": "market"},
            "asset_id = (SELECT id FROM assets WHERE slug = 'bitcoin')",
        ),
        ({"search": "bitcoin"}, "search_vector @@ websearch_to_tsquery('english', 'bitcoin')"),
    ],
)
async def test_cursor_walk_has_no_gaps_or_duplicates(
    client: Client, database: TestDatabase, api_data: ApiData, params: Any, where: str
) -> None:
    items = await walk(client, page_size=7, **params)
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids))
    assert ids == ordered_ids(database, where)


async def test_cursor_continues_an_offset_page(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    second = await get_page(client, page=2, page_size=10)
    cursor = second["metadata"]["pagination"]["next_cursor"]
    third = await get_page(client, page_size=10, cursor=cursor)
    assert [i["id"] for i in third["data"]] == ordered_ids(database)[20:30]
    # A cursor with page=1 is fine (page is ignored), and exact totals still apply.
    same = await get_page(client, page=1, page_size=10, cursor=cursor)
    assert same["data"] == third["data"]
    assert same["metadata"]["pagination"]["total_records"] == api_data.total
    assert same["metadata"]["filters_applied"] == {"cursor": True}


async def test_last_page_has_null_cursor_even_when_full(client: Client, api_data: ApiData) -> None:
    page = await get_page(client, page_size=api_data.total)
    assert len(page["data"]) == api_data.total
    assert page["metadata"]["pagination"]["next_cursor"] is None
    assert page["metadata"]["pagination"]["total_pages"] == 1


# --- validation ----------------------------------------------------------------------------------


def problems(response: Any) -> dict[str, str]:
    assert response.status_code == 400, response.text
    payload = body(response)
    assert payload["error"] == "invalid_parameters"
    assert payload["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return {d["parameter"]: d["message"] for d in payload["detail"]}


@pytest.mark.parametrize(
    ("query", "parameter", "fragment"),
    [
        ("page=0", "page", ">= 1"),
        ("page=-3", "page", ">= 1"),
        ("page=abc", "page", "integer"),
        ("page_size=5000", "page_size", "<= 1000"),
        ("page_size=0", "page_size", ">= 1"),
        ("page_size=1.5", "page_size", "integer"),
        ("source_type=bogus", "source_type", "bogus"),
        ("source_type=rss,bogus", "source_type", "bogus"),
        ("kind=trade", "kind", "market, news"),
        ("since=yesterday", "since", "ISO 8601"),
        ("until=2025-13-01", "until", "ISO 8601"),
        ("since=2025-03-02&until=2025-03-01", "until", "later than since"),
        ("cursor=not-a-cursor!!", "cursor", "not a cursor"),
        ("cursor=AQAAAA", "cursor", "not a cursor"),
        (f"page={MAX_OFFSET}&page_size=1000", "page", "next_cursor"),
        ("search=" + "x" * 600, "search", "at most"),
    ],
)
async def test_invalid_parameters(
    client: Client, api_data: ApiData, query: str, parameter: str, fragment: str
) -> None:
    found = problems(await client.get(f"/data?{query}"))
    assert parameter in found
    assert fragment in found[parameter]


async def test_every_bad_parameter_is_named(client: Client, api_data: ApiData) -> None:
    found = problems(
        await client.get("/data?page=0&page_size=5000&source_type=x&kind=y&since=z&until=w")
    )
    assert set(found) == {"page", "page_size", "source_type", "kind", "since", "until"}


async def test_cursor_is_bound_to_its_filters(client: Client, api_data: ApiData) -> None:
    first = await get_page(client, source_type="rss", page_size=5)
    cursor = first["metadata"]["pagination"]["next_cursor"]
    found = problems(await client.get("/data", params={"source_type": "csv", "cursor": cursor}))
    assert "other filters" in found["cursor"]
    found = problems(await client.get("/data", params={"cursor": cursor}))
    assert "cursor" in found
    with_page = problems(
        await client.get("/data", params={"source_type": "rss", "cursor": cursor, "page": 3})
    )
    assert "omitted" in with_page["page"]
    ok = await get_page(client, source_type="rss", page_size=5, cursor=cursor)
    assert ok["data"]


@pytest.mark.parametrize("parameter", ["search", "category", "asset"])
async def test_sql_injection_is_just_a_string(
    client: Client, database: TestDatabase, api_data: ApiData, parameter: str
) -> None:
    page = await get_page(client, **{parameter: SQLI})
    assert page["data"] == []
    assert page["metadata"]["filters_applied"][parameter] == SQLI
    assert count(database) == api_data.total  # still there


async def test_empty_values_mean_no_filter(client: Client, api_data: ApiData) -> None:
    page = await get_page(client, search="", category="  ", kind="", source_type="")
    assert page["metadata"]["filters_applied"] == {}
    assert page["metadata"]["pagination"]["total_records"] == api_data.total


async def test_estimates_agree_with_the_page(client: Client, api_data: ApiData) -> None:
    total = len((await get_page(client, search="bitcoin", page_size=1000))["data"])
    first = await get_page(client, search="bitcoin", page_size=5)
    assert first["metadata"]["pagination"]["total_records"] >= 6  # a next page exists
    last = await get_page(client, search="bitcoin", page_size=5, page=-(-total // 5))
    assert last["metadata"]["pagination"]["total_records"] == total
    beyond = await get_page(client, search="bitcoin", page_size=5, page=100)
    assert beyond["data"] == []
    assert beyond["metadata"]["pagination"]["total_records"] <= 99 * 5


def test_cursor_round_trip() -> None:
    from cryptoetl.api.data.query import encode_cursor, parse_query

    query = parse_query({})
    ts = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    cursor = encode_cursor(ts, 42, query.fingerprint())
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    again = parse_query({"cursor": [cursor]})
    assert again.after == (ts, 42)


@pytest.mark.parametrize(
    "ts",
    [
        datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        datetime(2025, 3, 1, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 12, 3, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2099, 7, 4, 1, 2, 3, 456_789, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
    ],
)
def test_page_timestamps_come_back_exact(database: TestDatabase, ts: datetime) -> None:
    """The page sends timestamps as microseconds (page._PAGE_ROW): every one of them comes
    back as the same instant and the same text iso_utc writes."""
    from cryptoetl.api.data import render
    from cryptoetl.api.data.page import _COLUMNS, _PAGE_ROW
    from cryptoetl.pipeline.documents import iso_utc

    values = ", ".join("%s::timestamptz" if c == "source_timestamp" else "NULL" for c in _COLUMNS)
    (row,) = sql(
        database, f"SELECT {_PAGE_ROW} FROM (SELECT {values}) q({', '.join(_COLUMNS)})", ts
    )
    assert render.timestamp_of(row) == ts
    assert render._iso_texts[row[render.TS]] == iso_utc(ts)
