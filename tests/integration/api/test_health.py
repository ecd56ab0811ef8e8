"""GET /health: states by the shared status rules (runs and data age), an empty database, and
the API with its database down and back."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from cryptoetl.api.app import create_app
from cryptoetl.config import load_settings
from tests.integration.api.conftest import ApiData, api_client, body, sql
from tests.integration.api.scenario import Recent, Run, fresh_everywhere, write_run
from tests.pg import TestDatabase, fresh_database

Client = httpx.AsyncClient


async def test_degraded_when_a_source_failed(
    client: Client, database: TestDatabase, api_data: ApiData
) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    health = body(response)
    assert health["status"] == "degraded"
    assert health["database_connected"] is True
    assert "coinpaprika: last run failed" in health["reasons"]
    assert set(health["sources"]) == {"csv", "coinpaprika", "coingecko", "rss"}
    paprika = health["sources"]["coinpaprika"]
    assert paprika["status"] == "failed"
    assert paprika["last_error"] == "HTTPStatusError: 502 from upstream"
    assert paprika["last_failure_at"].endswith("Z")
    counts = dict(sql(database, "SELECT source_type, count(*) FROM records GROUP BY 1"))
    assert {name: s["records"] for name, s in health["sources"].items()} == counts
    latest = sql(database, "SELECT id, status FROM runs ORDER BY started_at DESC LIMIT 1")[0]
    assert health["etl_last_run"]["id"] == str(latest[0])
    assert health["etl_status"] == latest[1]
    assert health["newest_record_at"] == "2025-03-01T12:00:00Z"
    assert health["metadata"]["request_id"] == response.headers["x-request-id"]
    assert health["timestamp"].endswith("Z")


# --- a history of now: data age, run staleness, overdue and interrupted runs ------------------


async def test_healthy_when_every_source_is_fresh(
    recent: Recent,
) -> None:
    db, engine, c = recent
    newest = await fresh_everywhere(db, engine)
    health = body(await c.get("/health"))
    assert health["status"] == "healthy"
    assert health["reasons"] == []
    for name, source in health["sources"].items():
        assert (source["health"], source["reasons"], source["stale"]) == ("healthy", [], False)
        assert source["newest_data_at"] == newest.isoformat().replace("+00:00", "Z"), name
        assert 55 < source["data_age_s"] < 120
    thresholds = {name: s["freshness_s"] for name, s in health["sources"].items()}
    assert thresholds == {"csv": None, "coinpaprika": 900, "coingecko": 900, "rss": 21_600}


async def test_degraded_when_no_run_succeeded_for_stale_after(
    recent: Recent,
) -> None:
    db, engine, c = recent
    await fresh_everywhere(db, engine)
    sql(
        db,
        "UPDATE checkpoints SET last_success_at = now() - interval '2 hours' "
        "WHERE source_type = 'csv'",
    )
    response = await c.get("/health")
    assert response.status_code == 200
    health = body(response)
    assert health["status"] == "degraded"
    assert health["reasons"] == ["csv: no successful run for 2 h (STALE_AFTER_S 1 h)"]
    assert health["sources"]["csv"]["stale"] is True
    assert health["sources"]["csv"]["health"] == "degraded"


async def test_degraded_on_a_frozen_upstream(
    recent: Recent,
) -> None:
    """CoinGecko's runs succeed, but what they bring is two days old: the data is stale."""
    db, engine, c = recent
    await fresh_everywhere(db, engine)
    frozen = datetime.now(UTC) - timedelta(days=2)
    sql(db, "DELETE FROM market_observations WHERE source_type = 'coingecko'")
    sql(db, "DELETE FROM market_series WHERE source_type = 'coingecko'")
    await write_run(db, engine, Run("coingecko", data_at=frozen))
    health = body(await c.get("/health"))
    assert health["status"] == "degraded"
    assert health["reasons"] == ["coingecko: newest data is 2 d old (FRESHNESS_S 15 min)"]
    gecko = health["sources"]["coingecko"]
    assert (gecko["status"], gecko["health"], gecko["stale"]) == ("success", "degraded", True)
    assert gecko["data_age_s"] == pytest.approx(2 * 86_400, abs=60)
    # A future-dated entry (clock skew, a hostile feed) does not make old news look fresh.
    old = datetime.now(UTC) - timedelta(days=3)
    sql(db, "DELETE FROM news_items")
    await write_run(db, engine, Run("rss", data_at=old))
    await write_run(db, engine, Run("rss", data_at=datetime.now(UTC) + timedelta(days=365)))
    rss = body(await c.get("/health"))["sources"]["rss"]
    assert rss["health"] == "degraded"
    assert rss["data_age_s"] == pytest.approx(3 * 86_400, abs=60)
    assert rss["reasons"] == ["newest data is 3 d old (FRESHNESS_S 6 h)"]


async def test_overdue_and_interrupted_runs_degrade_health_as_on_the_dashboard(
    recent: Recent,
) -> None:
    db, engine, c = recent
    await fresh_everywhere(db, engine)
    # rss runs every 600 s; its newest run ended 30 min ago: overdue by 20 min (no worker?).
    sql(db, "UPDATE runs SET finished_at = now() - interval '30 minutes' WHERE source_type = 'rss'")
    await write_run(db, engine, Run("csv", status="interrupted"))
    health = body(await c.get("/health"))
    assert health["status"] == "degraded"
    csv, rss = health["reasons"]
    assert csv == "csv: last run interrupted"
    assert rss.startswith("rss: next run overdue by 20 min")  # (+ the seconds this test took)
    page = (await c.get("/")).text
    assert 'id="source-csv" data-source="csv" data-status="degraded"' in page
    assert 'id="source-rss" data-source="rss" data-status="degraded"' in page
    assert "last run interrupted" in page
    assert "next run overdue by 20 min" in page


# --- an empty database ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_database(pg_server: str) -> Iterator[TestDatabase]:
    with fresh_database(pg_server) as db:
        yield db


@pytest.fixture(scope="module")
async def empty_client(empty_database: TestDatabase) -> AsyncIterator[Client]:
    async with api_client(create_app(load_settings(empty_database.env()))) as c:
        yield c


async def test_no_run_ever_is_degraded(empty_client: Client) -> None:
    response = await empty_client.get("/health")
    assert response.status_code == 200
    health = body(response)
    assert health["status"] == "degraded"
    assert health["etl_status"] == "never_run"
    assert health["etl_last_run"] is None
    assert "no ETL run recorded yet" in health["reasons"]
    assert {s["status"] for s in health["sources"].values()} == {"never_run"}


async def test_empty_database_answers_empty(empty_client: Client) -> None:
    page = body(await empty_client.get("/data"))
    assert page["data"] == []
    assert page["metadata"]["pagination"]["total_records"] == 0
    assert page["metadata"]["pagination"]["total_pages"] == 0
    assert page["metadata"]["pagination"]["next_cursor"] is None
    searched = body(await empty_client.get("/data?search=bitcoin"))
    assert searched["data"] == []
    stats = body(await empty_client.get("/stats"))
    assert stats["summary"]["records_total"] == 0
    assert stats["recent_runs"] == []
    missing = await empty_client.get("/compare-runs?source=rss")
    assert missing.status_code == 404
    assert body(missing)["error"] == "not_found"


# --- database down -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_port(url: str, port: int) -> str:
    """The same login and database, over TCP to 127.0.0.1:port (a socket ``host`` dropped)."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
    return urlunsplit((parts.scheme, f"{user}127.0.0.1:{port}", parts.path, query, ""))


def server_address(url: str) -> tuple[str, int] | str:
    """Where the test server listens: (host, port), or a Unix socket path (embedded server)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    port = int(query.get("port") or parts.port or 5432)
    if "host" in query and query["host"].startswith("/"):
        return f"{query['host']}/.s.PGSQL.{port}"
    return parts.hostname or "127.0.0.1", port


@contextlib.asynccontextmanager
async def api_at(database: TestDatabase, port: int) -> AsyncIterator[Client]:
    env = database.env(API_DATABASE_URL=with_port(database.reader_url, port))
    async with api_client(create_app(load_settings(env))) as c:
        yield c


def assert_clean_503(response: Any, error: str) -> dict[str, Any]:
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    payload: dict[str, Any] = body(response)
    text = response.text
    for leak in ("Traceback", "postgresql://", "127.0.0.1", "asyncpg", "Error("):
        assert leak not in text
    if error:
        assert payload["error"] == error
    return payload


async def test_database_unreachable_is_a_clean_503(
    database: TestDatabase, api_data: ApiData
) -> None:
    async with api_at(database, free_port()) as c:  # nothing listens there
        started = time.monotonic()
        health = assert_clean_503(await c.get("/health"), "")
        assert health["status"] == "unhealthy"
        assert health["database_connected"] is False
        for path in (
            "/data",
            "/data?search=x",
            "/stats",
            "/runs",
            "/compare-runs?source=csv",
            "/assets",
            "/assets/bitcoin",
        ):
            payload = assert_clean_503(await c.get(path), "database_unavailable")
            assert payload["request_id"]
        assert time.monotonic() - started < 5
        live = await c.get("/health/live")  # the process is fine: liveness must not restart it
        assert live.status_code == 200
        assert body(live)["status"] == "alive"
        scraped = await c.get("/metrics")  # and request metrics still answer
        assert scraped.status_code == 200
        assert "cryptoetl_pipeline_up 0.0" in scraped.text
        assert "cryptoetl_http_requests_total" in scraped.text
        assert "cryptoetl_source_status" not in scraped.text  # nothing made up


async def test_health_gives_up_after_two_seconds(database: TestDatabase, api_data: ApiData) -> None:
    # A port that accepts TCP but never speaks PostgreSQL: a hung server.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        async with api_at(database, listener.getsockname()[1]) as c:
            started = time.monotonic()
            response = await c.get("/health")
            elapsed = time.monotonic() - started
    assert_clean_503(response, "")
    assert 1.5 < elapsed < 4


class Proxy:
    """A loopback TCP proxy we can stop (dropping every connection) and start again."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self.target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.target)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
            self.writers.discard(writer)


async def test_recovers_when_the_database_comes_back(
    database: TestDatabase, api_data: ApiData
) -> None:
    proxy = Proxy(server_address(database.admin_url))
    await proxy.start()
    async with api_at(database, proxy.port) as c:
        assert (await c.get("/data")).status_code == 200
        assert (await c.get("/health")).status_code == 200

        await proxy.stop()
        assert_clean_503(await c.get("/data"), "database_unavailable")
        assert body(await c.get("/health"))["status"] == "unhealthy"
        assert_clean_503(await c.get("/stats"), "database_unavailable")

        await proxy.start()
        assert (await c.get("/data")).status_code == 200  # no restart, no retry needed
        assert body(await c.get("/health"))["database_connected"] is True
    await proxy.stop()
