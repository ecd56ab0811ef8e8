"""Benchmark ``GET /data`` against the database ceiling (pgbench running the same SQL).

    uv run python bench/api_bench.py [--rows 1000000] [--duration 10] [--concurrency 32]

1. (Re)creates the database ``cryptoetl_bench_api`` on ``BENCH_DATABASE_URL`` (default
   ``postgresql://postgres@127.0.0.1:5432/postgres``), migrates it with ``alembic upgrade head``
   and fills ``records`` with ``--rows`` rows in one ``INSERT … SELECT generate_series`` (the
   count triggers keep ``record_counts`` exact, as for the worker). ``--reuse`` keeps a loaded
   database.
2. Starts ``granian --interface asgi cryptoetl.api.app:app`` (1 worker, free loopback port)
   logged in as a read-only login, like production.
3. Per scenario: drives the API for ``--duration`` s with ``--concurrency`` keep-alive
   connections from an in-process asyncio client (a minimal HTTP/1.1 client: on a 2-core box
   the load generator shares the CPU with the server and PostgreSQL, so it must be lean), then
   runs ``pgbench -n -M prepared -c 8 -T <duration>`` with the statement the API sends for the
   request (taken from ``cryptoetl.api.data``, not copied), and prints API req/s, p99, pgbench
   tps and API/pgbench.

For ``search`` the API also asks the planner for an estimate, at most once per second per
filter set (cached), so pgbench runs only the page statement, as the API does in steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg

from cryptoetl.api import data as api_data
from cryptoetl.coins import known_coins
from cryptoetl.pipeline.assets import normalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "cryptoetl_bench_api"
READER_LOGIN = "cryptoetl_bench_reader"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- database ------------------------------------------------------------------------------------


def with_database(url: str, database: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        password = f":{parts.password}" if parts.password else ""
        netloc = f"{user}{password}@{host}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


def create_database(admin_url: str, name: str = BENCH_DB) -> str:
    """(Re)create database `name`, migrated to head; its URL. Shared by the benchmarks."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return url


def ensure_reader(admin_url: str) -> str:
    """A login in the migrations' reader role, with the admin's password if it has one."""
    password = urlsplit(admin_url).password
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_LOGIN,)
        ).fetchone()
        if not exists:
            conn.execute(f"CREATE ROLE {READER_LOGIN} LOGIN IN ROLE cryptoetl_reader")
        if password:
            conn.execute(f"ALTER ROLE {READER_LOGIN} PASSWORD %s", (password,))
    return with_database(admin_url, BENCH_DB, user=READER_LOGIN)


SEED_ASSETS = "INSERT INTO assets (slug, symbol, name, normalized_name) VALUES (%s, %s, %s, %s)"
EXTRA_ASSETS = """INSERT INTO assets (slug, symbol, name, normalized_name)
SELECT 'bench-coin-' || g, 'BC' || g, 'Bench Coin ' || g, 'benchcoin' || g
FROM generate_series(1, 170) g"""
MAPPINGS = """INSERT INTO asset_mappings
    (asset_id, source_type, source_id, symbol, name, match_method, confidence)
SELECT a.id, s.source_type,
    CASE s.source_type WHEN 'csv' THEN a.symbol WHEN 'coinpaprika' THEN 'p-' || a.slug
        ELSE a.slug END,
    a.symbol, a.name, 'seed', 1.0
FROM assets a CROSS JOIN (VALUES ('csv'), ('coinpaprika'), ('coingecko')) AS s(source_type)"""
# Three market rows (csv / coinpaprika / coingecko) for every news row (rss); timestamps grow
# with the id and come in pairs, so keyset pagination has ties to break.
RECORDS = """WITH a AS (
    SELECT array_agg(id ORDER BY id) AS ids, array_agg(symbol ORDER BY id) AS syms,
           array_agg(name ORDER BY id) AS names, count(*)::int AS n FROM assets
), btc AS (SELECT id FROM assets WHERE slug = 'bitcoin'),
gen AS (
    SELECT g, g %% 4 = 0 AS is_news, 1 + (g / 4) %% a.n AS ai, (g / 4) %% 6 AS headline,
           a.ids, a.syms, a.names, btc.id AS btc_id
    FROM generate_series(1, %(rows)s) AS g, a, btc
)
INSERT INTO records (kind, source_type, source_id, asset_id, symbol, price_usd, market_cap_usd,
    volume_24h_usd, change_24h_pct, rank, title, summary, url, author, category, tags,
    mentioned_asset_ids, source_timestamp, content_hash, metadata)
SELECT
    CASE WHEN is_news THEN 'news' ELSE 'market' END,
    CASE WHEN is_news THEN 'rss' ELSE (ARRAY['csv', 'coinpaprika', 'coingecko'])[1 + g %% 3] END,
    'bench-' || g,
    CASE WHEN NOT is_news THEN ids[ai] END,
    CASE WHEN NOT is_news THEN syms[ai] END,
    CASE WHEN NOT is_news THEN 0.5 + (g %% 10007) * 0.37 END,
    CASE WHEN NOT is_news THEN (0.5 + (g %% 10007) * 0.37) * 19000000 END,
    CASE WHEN NOT is_news THEN (g %% 7919) * 1234.5 END,
    CASE WHEN NOT is_news THEN ((g %% 2001) - 1000) / 100.0 END,
    CASE WHEN NOT is_news THEN ai END,
    CASE WHEN is_news THEN (ARRAY[
        'Bitcoin rallies as ETF inflows grow', 'Ethereum developers ship network upgrade',
        'Regulators weigh new stablecoin rules', 'Solana network sees record activity',
        'Bitcoin miners adjust after the halving', 'DeFi protocol reports exploit'
    ])[1 + headline] || ' (' || g || ')' ELSE names[ai] END,
    CASE WHEN is_news THEN 'Market report ' || g
        || ': analysts discuss liquidity, volatility and on-chain activity.' END,
    CASE WHEN is_news THEN 'https://news.example/article/' || g END,
    CASE WHEN is_news THEN (ARRAY['Alice Chen', 'Bob Ortiz', 'Carol Ng'])[1 + g %% 3] END,
    CASE WHEN is_news THEN (ARRAY['markets', 'policy', 'technology', 'defi'])[1 + (g / 4) %% 4]
        END,
    CASE WHEN is_news THEN ARRAY['crypto', 'news'] ELSE '{}' END,
    CASE WHEN is_news AND headline IN (0, 4) THEN ARRAY[btc_id] ELSE '{}' END,
    now() - interval '1 hour' - ((%(rows)s - g) / 2) * interval '5 seconds',
    decode(md5(g::text), 'hex'),
    jsonb_build_object('bench', true, 'seq', g)
FROM gen"""


def load(url: str, rows: int) -> None:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        seed = [(s.slug, s.symbol, s.name, normalize_name(s.name)) for s in known_coins()]
        with conn.cursor() as cur:
            cur.executemany(SEED_ASSETS, seed)
        conn.execute(EXTRA_ASSETS)
        conn.execute(MAPPINGS)
        conn.execute(RECORDS, {"rows": rows})
        conn.execute("VACUUM ANALYZE")
    total = loaded_rows(url)
    print(f"loaded {rows} rows in {time.monotonic() - started:.0f}s (record_counts: {total})")


def loaded_rows(url: str) -> int:
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT coalesce(sum(n), 0) FROM record_counts").fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


# --- the API server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(reader_url: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "API_DATABASE_URL": reader_url, "LOG_LEVEL": "INFO"}
    env.pop("DATABASE_URL", None)
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--workers",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "cryptoetl.api.app:app",
    ]
    log = log_path.open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


async def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client = await HttpClient.connect("127.0.0.1", port)
            status, _ = await client.get("/data?page_size=1")
            await client.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not become ready; see the granian log")


# --- load generator ------------------------------------------------------------------------------


class HttpClient:
    """Just enough HTTP/1.1 for keep-alive GETs against our own server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader = reader
        self.writer = writer
        self.host = host

    @classmethod
    async def connect(cls, host: str, port: int) -> HttpClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            return status, await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            return status, await self._chunked()
        raise RuntimeError("response without length")

    async def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return bytes(body)
            body += chunk[:-2]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p99_ms(self) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[98] * 1000


async def drive(port: int, path: str, seconds: float, concurrency: int) -> LoadResult:
    clients = [await HttpClient.connect("127.0.0.1", port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def loop(client: HttpClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            status, _ = await client.get(path)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.close()
    return LoadResult(len(latencies), errors, elapsed, latencies)


# --- pgbench -------------------------------------------------------------------------------------


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    raise RuntimeError("pgbench not found (install postgresql-client or add it to PATH)")


def pg_literal(value: Any) -> str:
    if isinstance(value, list):
        return "{" + ",".join(value) + "}"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def pgbench_script(query: api_data.DataQuery) -> tuple[str, list[str]]:
    """The API's page statement for ``query`` with pgbench variables, and their -D options."""
    statement = api_data.page_statement(api_data.shape_of(query))
    values = api_data.values_of(query)
    # Every API parameter carries a cast ($1::int); pgbench misreads ":p1::int", so spell it
    # CAST(:p1 AS int), which is the same statement to the server.
    sql = re.sub(r"\$(\d+)::([a-z\[\]]+)", r"CAST(:p\1 AS \2)", statement.sql)
    assert "$" not in sql, "a parameter without a cast"
    defines = []
    for index, name in enumerate(statement.params, start=1):
        value = values[name]
        if value is None:
            raise ValueError(f"pgbench cannot bind NULL for {name}")
        defines += ["-D", f"p{index}={pg_literal(value)}"]
    # pgbench reads one statement per line unless it ends with ';' (multi-line since PG 10).
    return " ".join(sql.split()) + ";\n", defines


def run_pgbench(url: str, query: api_data.DataQuery, seconds: int, clients: int) -> float:
    script, defines = pgbench_script(query)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script)
        path = handle.name
    try:
        command = [
            pgbench_binary(),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            path,
            *defines,
            url,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(path)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if not match:
        raise RuntimeError(f"could not read pgbench output:\n{out}")
    return float(match.group(1))


# --- scenarios -----------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    params: dict[str, str]


def deep_cursor(url: str, offset: int) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT source_timestamp, id FROM records "
            "ORDER BY source_timestamp DESC, id DESC OFFSET %s LIMIT 1",
            (offset,),
        ).fetchone()
    assert row is not None, "table smaller than the cursor depth"
    fingerprint = api_data.parse_query(**_raw({})).fingerprint()
    return api_data.encode_cursor(row[0], row[1], fingerprint)


def _raw(params: dict[str, str]) -> dict[str, Any]:
    names = ("page", "page_size", "kind", "asset", "category", "search", "since", "until")
    raw: dict[str, Any] = {name: params.get(name) for name in names}
    raw["source_type"] = [params["source_type"]] if "source_type" in params else None
    raw["cursor"] = params.get("cursor")
    return raw


def scenarios(url: str, rows: int) -> list[Scenario]:
    depth = min(900_000, rows * 9 // 10)
    return [
        Scenario("page 1, no filter", {}),
        Scenario("source_type=coingecko", {"source_type": "coingecko"}),
        Scenario(f"cursor at row {depth:,}", {"cursor": deep_cursor(url, depth)}),
        Scenario("search=bitcoin", {"search": "bitcoin"}),
    ]


async def bench(args: argparse.Namespace) -> None:
    admin_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    bench_url = with_database(admin_url, BENCH_DB)
    if args.reuse and loaded_rows(bench_url) == args.rows:
        print(f"reusing {BENCH_DB} ({args.rows} rows)")
    else:
        bench_url = create_database(admin_url)
        load(bench_url, args.rows)
    reader_url = ensure_reader(admin_url)
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / "cryptoetl_api_bench_granian.log"
    server = start_api(reader_url, port, log_path)
    results = []
    try:
        await wait_ready(port)
        for scenario in scenarios(bench_url, args.rows):
            path = "/data" + ("?" + urlencode(scenario.params) if scenario.params else "")
            await drive(port, path, 2, args.concurrency)  # warm plans, caches, pool
            load_result = await drive(port, path, args.duration, args.concurrency)
            query = api_data.parse_query(**_raw(scenario.params))
            tps = run_pgbench(reader_url, query, int(args.duration), args.pgbench_clients)
            results.append((scenario.name, load_result, tps))
            print(
                f"{scenario.name}: {load_result.rps:.0f} req/s, p99 {load_result.p99_ms:.1f} ms,"
                f" errors {load_result.errors}; pgbench {tps:.0f} tps",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(10)
    print()
    print(
        f"{'scenario':<26} {'API req/s':>10} {'p99 ms':>8} {'pgbench tps':>12} {'API/pgbench':>12}"
    )
    for name, result, tps in results:
        print(
            f"{name:<26} {result.rps:>10.0f} {result.p99_ms:>8.1f} {tps:>12.0f} "
            f"{result.rps / tps:>12.2f}"
        )
    print(f"\n(granian log: {log_path}; {os.cpu_count()} CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded database")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
