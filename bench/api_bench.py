"""Benchmark ``GET /data`` with wrk against two ceilings measured in the same run.

    uv run python bench/api_bench.py [--rows 200000] [--duration 10] [--rounds 3] [--connections 32]

1. (Re)creates ``cryptoetl_bench_api`` on ``BENCH_DATABASE_URL`` (default the local server) and
   fills it **with the worker**: a generated hourly CSV of ``--rows`` rows (20 coins) plus the
   recorded CoinGecko, CoinPaprika and RSS fixtures through the stub upstream; ``--reuse`` keeps
   a database already filled.
2. Starts the API (``granian --interface asgi cryptoetl.api.app:app``, one worker per CPU as
   ``--workers`` says, the read-only login) and, for the ceilings, with as many workers,
   * **static**: Granian answering the API's own page-1 bytes from memory through a bare ASGI
     callable (``bench/static_app.py``): what no design of ours can beat (the API answers
     cached pages through the same server and interface);
   * **pre-rendered**: pgbench (``-M prepared``) reading 51 pre-rendered items by index from a
     table of the API's items (``bench_prerendered``): the cheapest possible database read of a
     page; ``at random depth`` reads them below a random timestamp, as unique requests do.
3. Drives each scenario with wrk (one thread: a C load generator that leaves the CPU to the
   server and PostgreSQL), after a warm-up: page 1, ``source_type=csv``, a cursor deep in the
   table, ``search=bitcoin`` (all repeated: the response cache answers them) and a different
   ``until`` on every request (a wrk Lua script: every request misses the cache), and prints
   req/s, p99 and the ratios against both ceilings with the targets.
4. Repeats the measurements of 2 and 3 ``--rounds`` times (default 3), each ratio taken within its
   round, and prints the medians (and each round's ratio against the target's ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from urllib.parse import urlsplit

import asyncpg
import httpx
import psycopg
from common import (
    REPO_ROOT,
    admin_url,
    binary,
    create_database,
    free_port,
    with_database,
)
from ingest_bench import GENERATED_COLUMN_MAP, generate_csv

from cryptoetl.api.data import render
from cryptoetl.api.data.filters import bind, shape_of, values_of
from cryptoetl.api.data.page import page_statement
from cryptoetl.api.data.query import encode_cursor, parse_query

BENCH_DB = "cryptoetl_bench_api"
READER_LOGIN = "cryptoetl_bench_reader"
TARGET_STATIC = 0.5  # repeated pages >= 0.5 x the static ceiling
TARGET_PRERENDERED = 0.25  # unique requests >= 0.25 x the pre-rendered pgbench ceiling
PRERENDERED = """CREATE TABLE bench_prerendered (ts timestamptz NOT NULL, id bigint NOT NULL,
    item text NOT NULL)"""
CEILING_PAGE = (
    "SELECT '[' || string_agg(item, ',') || ']' FROM "
    "(SELECT item FROM bench_prerendered ORDER BY ts DESC, id DESC LIMIT 51) t;\n"
)
CEILING_AT_DEPTH = (
    "\\set back random(0, :hours)\n"
    "SELECT '[' || string_agg(item, ',') || ']' FROM (SELECT item FROM bench_prerendered "
    "WHERE ts < (SELECT max(ts) FROM bench_prerendered) - make_interval(hours => :back) "
    "ORDER BY ts DESC, id DESC LIMIT 51) t;\n"
)
# ``start`` differs between the warm-up and the measured run: with one counter for both, the
# measured run would repeat the warm-up's values and be answered from the response cache.
UNIQUE_UNTIL_LUA = """
counter = {start}
request = function()
  counter = counter + 1
  local t = {newest} - (counter % {hours}) * 3600 - math.floor(counter / {hours})
  return wrk.format("GET", "/data?until=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", t))
end
"""


# --- filling the database with the worker --------------------------------------------------------


def fill(url: str, rows: int, workdir: Path) -> None:
    csv_path = workdir / f"ohlcv_{rows}.csv"
    if not csv_path.exists():
        generate_csv(csv_path, rows)
    stub_port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "cryptoetl", "stub-upstream", "--port", str(stub_port)],
        cwd=REPO_ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    base = f"http://127.0.0.1:{stub_port}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CSV_PATHS": str(csv_path),
        "CSV_COLUMN_MAP": GENERATED_COLUMN_MAP,
        "COINPAPRIKA_BASE_URL": base,
        "COINGECKO_BASE_URL": f"{base}/api/v3",
        "RSS_FEED_URLS": f"{base}/rss",
        "LOG_LEVEL": "WARNING",
    }
    try:
        wait_http(f"{base}/v1/tickers")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "cryptoetl", "worker", "--once"], env=env, check=True)
        print(f"the worker wrote {stored_rows(url):,} records in {time.monotonic() - started:.0f}s")
    finally:
        stub.terminate()
        stub.wait(10)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def stored_rows(url: str) -> int:
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM records").fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def ensure_reader(admin: str) -> str:
    """A login in the migrations' reader role, with the admin's password if it has one."""
    password = urlsplit(admin).password
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_LOGIN,))
        if not exists.fetchone():
            conn.execute(f"CREATE ROLE {READER_LOGIN} LOGIN IN ROLE cryptoetl_reader")
        if password:
            conn.execute(f"ALTER ROLE {READER_LOGIN} PASSWORD %s", (password,))
    return with_database(admin, BENCH_DB, user=READER_LOGIN)


async def prerender(url: str) -> int:
    """``bench_prerendered``: every item exactly as the API renders it, walked by keyset."""
    query = parse_query({"page_size": ["1000"]})
    docs = render.SeriesDocs()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_prerendered")
        await conn.execute(PRERENDERED)
        total = 0
        while True:
            statement = page_statement(shape_of(query, exact_total=False))
            rows = await conn.fetch(statement.sql, *bind(statement, values_of(query)))
            if not rows:
                break
            await docs.load(conn, rows)
            await conn.copy_records_to_table(
                "bench_prerendered",
                records=[
                    (render.timestamp_of(r), r[render.ID], render.items([r], docs)[1:-1].decode())
                    for r in rows
                ],
            )
            total += len(rows)
            last = rows[-1]
            cursor = encode_cursor(render.timestamp_of(last), last[render.ID], query.fingerprint())
            query = parse_query({"page_size": ["1000"], "cursor": [cursor]})
        await conn.execute("CREATE INDEX ON bench_prerendered (ts DESC, id DESC)")
        await conn.execute("VACUUM ANALYZE bench_prerendered")
    finally:
        await conn.close()
    return total


# --- servers ------------------------------------------------------------------------------------


def granian(
    app: str, port: int, env: dict[str, str], cwd: Path, log: Path, workers: int
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "granian", "--interface", "asgi", "--workers", str(workers),
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", app,
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def wait_http(url: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response.content
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 in {timeout:.0f}s")


# --- load ---------------------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    p99_ms: float
    non_2xx: int


def wrk(url: str, seconds: float, connections: int, script: Path | None = None) -> Load:
    command = [
        binary("wrk", "apt-get install wrk"), "-t1", f"-c{connections}", f"-d{seconds:.0f}s",
        "--latency", *(["-s", str(script)] if script else []), url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(rps, p99_ms, int(errors.group(1)) if errors else 0)


def pgbench(url: str, script: str, seconds: float, hours: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script)
    try:
        command = [
            binary("pgbench", "install postgresql-client"), "-n", "-M", "prepared", "-c", "8",
            "-j", "2", "-T", f"{seconds:.0f}", "-D", f"hours={hours}", "-f", handle.name, url,
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(handle.name)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if not match:
        raise RuntimeError(f"could not read pgbench output:\n{out}")
    return float(match.group(1))


def deep_cursor(url: str, depth: int) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT source_timestamp, id FROM records "
            "ORDER BY source_timestamp DESC, id DESC OFFSET %s LIMIT 1",
            (depth,),
        ).fetchone()
    assert row is not None, "table smaller than the cursor depth"
    return encode_cursor(row[0], row[1], parse_query({}).fingerprint())


def history_span(url: str) -> tuple[int, int]:
    """(newest timestamp as epoch seconds, hours of history) of the observations."""
    with psycopg.connect(url) as conn:
        newest, hours = conn.execute(
            "SELECT extract(epoch FROM max(source_timestamp))::bigint, "
            "(extract(epoch FROM max(source_timestamp) - min(source_timestamp)) / 3600)::int "
            "FROM market_observations"
        ).fetchone()  # type: ignore[misc]
    return int(newest), max(1, int(hours))


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Round:
    """One pass over the ceilings and every scenario, measured back to back."""

    static: float
    pre_page: float
    pre_depth: float
    loads: list[Load]


# (name, path, whether every request differs: then it runs a wrk script and is held against the
# pre-rendered read at random depth)
Scenario = tuple[str, str, bool]
# Each run of the unique-until script starts its counter here times its index (a warm-up and
# a measured run per round), so no run repeats another's values; they stay unique while the
# counter stays below hours * 3600 (65 M for two years of hourly rows).
COUNTER_STRIDE = 5_000_000


def unique_script(workdir: Path, newest: int, hours: int, index: int) -> Path:
    script = workdir / f"unique_until_{index}.lua"
    start = index * COUNTER_STRIDE
    if start + COUNTER_STRIDE > hours * 3600:
        raise SystemExit("too many rounds for this history: its until values would repeat")
    script.write_text(UNIQUE_UNTIL_LUA.format(newest=newest, hours=hours, start=start))
    return script


def run(args: argparse.Namespace) -> None:
    admin = admin_url()
    url = with_database(admin, BENCH_DB)
    workdir = Path(tempfile.gettempdir()) / "cryptoetl_api_bench"
    workdir.mkdir(exist_ok=True)
    if not (args.reuse and stored_rows(url) >= args.rows):
        url = create_database(admin, BENCH_DB)
        fill(url, args.rows, workdir)
    reader = ensure_reader(admin)
    print(f"pre-rendered items: {asyncio.run(prerender(url)):,}", flush=True)
    newest, hours = history_span(url)
    api_port, static_port = free_port(), free_port()
    api_env = {**os.environ, "API_DATABASE_URL": reader, "LOG_LEVEL": "WARNING"}
    api_env.pop("DATABASE_URL", None)
    api = granian("cryptoetl.api.app:app", api_port, api_env, REPO_ROOT, workdir / "api.log",
                  args.workers)  # fmt: skip
    static = None
    try:
        base = f"http://127.0.0.1:{api_port}"
        page_one = wait_http(f"{base}/data")
        body_file = workdir / "page1.json"
        body_file.write_bytes(page_one)
        static_env = {**os.environ, "STATIC_BODY_FILE": str(body_file)}
        static = granian("static_app:app", static_port, static_env, Path(__file__).parent,
                         workdir / "static.log", args.workers)  # fmt: skip
        wait_http(f"http://127.0.0.1:{static_port}/data")
        cursor = deep_cursor(url, stored_rows(url) * 9 // 10)
        scenarios: list[Scenario] = [
            ("page 1, repeated", "/data", False),
            ("source_type=csv, repeated", "/data?source_type=csv", False),
            ("cursor at 90% depth, repeated", f"/data?cursor={cursor}", False),
            ("search=bitcoin, repeated", "/data?search=bitcoin", False),
            ("a different until per request", "/data", True),
        ]
        rounds = []
        for n in range(args.rounds):
            print(f"round {n + 1} of {args.rounds}", flush=True)
            static_rps = wrk(f"http://127.0.0.1:{static_port}/data", args.duration,
                             args.connections).rps  # fmt: skip
            loads = []
            for name, path, unique in scenarios:
                warm_up = unique_script(workdir, newest, hours, 2 * n) if unique else None
                script = unique_script(workdir, newest, hours, 2 * n + 1) if unique else None
                wrk(base + path, 2, args.connections, warm_up)  # plans, pool, cache
                loads.append(wrk(base + path, args.duration, args.connections, script))
                print(f"  {name}: {loads[-1].rps:,.0f} req/s", flush=True)
            # The servers are idle meanwhile: pgbench has the machine as the API had.
            pre_page = pgbench(reader, CEILING_PAGE, args.duration, hours)
            pre_depth = pgbench(reader, CEILING_AT_DEPTH, args.duration, hours)
            rounds.append(Round(static_rps, pre_page, pre_depth, loads))
    finally:
        for server in (api, static):
            if server is not None:
                server.terminate()
                server.wait(10)
    print_table(scenarios, rounds, stored_rows(url), args.workers)


def print_table(scenarios: list[Scenario], rounds: list[Round], n: int, workers: int) -> None:
    """Medians over the rounds; each ratio is taken within its round (against the ceilings
    measured minutes apart, not across the run), so a machine whose speed drifts (a shared VM
    here: the same run varies by a fifth from one minute to the next) skews it less."""
    print(
        f"\n== GET /data, {n:,} records written by the worker; {workers} Granian worker(s); "
        f"wrk -t1; medians of {len(rounds)} round(s) =="
    )
    static = median(r.static for r in rounds)
    pre_page, pre_depth = median(r.pre_page for r in rounds), median(r.pre_depth for r in rounds)
    print(
        f"ceilings: static bytes from a bare ASGI app on Granian {static:,.0f} req/s; pgbench on "
        f"pre-rendered items: page 1 {pre_page:,.0f} tps, at random depth {pre_depth:,.0f} tps"
    )
    head = f"{'scenario':<32} {'req/s':>8} {'p99 ms':>7} {'/static':>8} {'/pre-rendered':>14}"
    print(head + f" {'target':>22} {'met':>4}  per round")
    for i, (name, _, unique) in enumerate(scenarios):
        loads = [r.loads[i] for r in rounds]
        vs_static = [r.loads[i].rps / r.static for r in rounds]
        vs_pre = [r.loads[i].rps / (r.pre_depth if unique else r.pre_page) for r in rounds]
        target, met, kept = (
            (f">= {TARGET_PRERENDERED} x pre-rendered", median(vs_pre) >= TARGET_PRERENDERED,
             vs_pre)
            if unique
            else (f">= {TARGET_STATIC} x static", median(vs_static) >= TARGET_STATIC, vs_static)
        )  # fmt: skip
        non_2xx = sum(load.non_2xx for load in loads)
        errors = f"  ({non_2xx} non-2xx)" if non_2xx else ""
        print(
            f"{name:<32} {median(x.rps for x in loads):>8,.0f} "
            f"{median(x.p99_ms for x in loads):>7.1f} {median(vs_static):>8.2f} "
            f"{median(vs_pre):>14.2f} {target:>22} {'yes' if met else 'NO':>4}  "
            + " ".join(f"{ratio:.2f}" for ratio in kept)
            + errors
        )
    print(f"({os.cpu_count()} CPUs; the load generator, the servers and PostgreSQL share them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="Granian workers of the API and of the static ceiling (default: one per CPU)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="passes over ceilings and scenarios (medians)"
    )
    parser.add_argument("--reuse", action="store_true", help="keep a database already filled")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
