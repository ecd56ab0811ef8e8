"""Ingest benchmark: cryptoetl's CSV load against the physical limit (``\\copy``) and dlt.

    uv run python bench/ingest_bench.py                      # 1M rows (all four), 4M (no dlt)
    uv run python bench/ingest_bench.py --rows 1000000 --dlt-at-every-size

For each size (``--rows``, repeatable; default 1,000,000 and 4,000,000):

0. generates (once, cached in ``--workdir``) a realistic hourly OHLCV CSV
   ``timestamp,symbol,open,high,low,close,volume,market_cap`` for 20 symbols (seeded random
   walks), and (re)creates the database ``cryptoetl_bench_ingest`` on ``BENCH_DATABASE_URL``
   (default ``postgresql://postgres@127.0.0.1:5432/postgres``), migrated with Alembic;
1. ``psql -c "\\copy bench_bare FROM file CSV HEADER"`` into a bare table (no key, no index):
   the physical limit of getting those bytes into PostgreSQL;
2. ``cryptoetl worker --once --source csv`` on the same file (``ENABLED_SOURCES=csv``):
   stream, parse, validate, resolve assets, store raw batches, COPY + ``INSERT … ON CONFLICT``,
   checkpoint per batch;
3. the same file loaded by dlt (``write_disposition="merge"``, primary key
   ``(symbol, timestamp)``, rows from :class:`csv.DictReader` with column type hints), run as
   ``uv run --group bench python bench/ingest_bench.py --dlt-child …`` (1M only unless
   ``--dlt-at-every-size``);
4. the second, unchanged run of cryptoetl (checkpoints make it one ``stat``).

Before any step, the environment's modules are compiled to bytecode (``compileall``), as the
image does at build time (``UV_COMPILE_BYTECODE=1``): a worker process in production starts from
``.pyc`` files, and with ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) every child would
otherwise compile SQLAlchemy from source again, ~0.3 s that no deployment pays.

Every step is a child process; its peak RSS comes from ``wait4`` (the child's own rusage,
descendants included). Prints rows/s, wall time and peak RSS per step, and the ratios
cryptoetl/\\copy, dlt/cryptoetl, rerun/first, against the targets.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from common import create_database  # bench/ is this script's folder: its sibling

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "cryptoetl_bench_ingest"
DLT_DATASET = "bench_dlt"
SIZES = (1_000_000, 4_000_000)
# (symbol, starting price, market-cap multiplier ~ circulating supply)
SYMBOLS = (
    ("BTC", 9_000.0, 19.5e6),
    ("ETH", 200.0, 120e6),
    ("USDT", 1.0, 110e9),
    ("BNB", 20.0, 150e6),
    ("SOL", 1.5, 440e6),
    ("XRP", 0.25, 54e9),
    ("USDC", 1.0, 33e9),
    ("ADA", 0.05, 35e9),
    ("DOGE", 0.002, 140e9),
    ("TRX", 0.015, 88e9),
    ("AVAX", 4.0, 370e6),
    ("DOT", 3.0, 1.3e9),
    ("LINK", 2.0, 560e6),
    ("MATIC", 0.02, 9e9),
    ("LTC", 45.0, 74e6),
    ("BCH", 230.0, 19.6e6),
    ("XLM", 0.05, 28e9),
    ("ATOM", 2.5, 380e6),
    ("UNI", 3.0, 750e6),
    ("ETC", 5.0, 145e6),
)
HEADER = "timestamp,symbol,open,high,low,close,volume,market_cap\n"
TARGET_COPY_RATIO = 8.0  # cryptoetl within 8x of \copy
TARGET_DLT_RATIO = 4.0  # dlt at least 4x slower than cryptoetl
TARGET_RERUN_PCT = 5.0  # unchanged re-run under 5% of the first
TARGET_RSS_MB = 250.0


# --- data ------------------------------------------------------------------------------------


# What the generated file cannot say about itself, declared as a user would: prices in USD,
# ``volume`` in USD (close x a share of the supply), so every value column is parsed and stored.
GENERATED_COLUMN_MAP = "ohlcv_*.csv:quote=USD,volume_unit=quote"


def generate_csv(path: Path, rows: int, seed: int = 20240101) -> None:
    """``rows`` hourly OHLCV rows, every symbol once per hour, oldest first."""
    rng = random.Random(seed)
    prices = [start for _, start, _ in SYMBOLS]
    hour = timedelta(hours=1)
    when = datetime(2026, 1, 1, tzinfo=UTC) - hour * math.ceil(rows / len(SYMBOLS))
    tmp = path.with_suffix(".tmp")
    written = 0
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        lines: list[str] = []
        while written < rows:
            stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            for k, (symbol, _, supply) in enumerate(SYMBOLS):
                if written == rows:
                    break
                open_ = prices[k]
                stable = symbol in ("USDT", "USDC")
                drift = rng.gauss(0, 0.0005 if stable else 0.01)
                close = 1.0 + rng.gauss(0, 0.0005) if stable else max(open_ * (1 + drift), 1e-6)
                high = max(open_, close) * (1 + abs(rng.gauss(0, 0.004)))
                low = min(open_, close) * (1 - abs(rng.gauss(0, 0.004)))
                volume = close * supply * rng.uniform(0.0005, 0.004)
                lines.append(
                    f"{stamp},{symbol},{open_:.6g},{high:.6g},{low:.6g},{close:.6g},"
                    f"{volume:.2f},{close * supply:.2f}\n"
                )
                prices[k] = close
                written += 1
            if len(lines) >= 20_000:
                fh.writelines(lines)
                lines.clear()
            when += hour
        fh.writelines(lines)
    tmp.replace(path)


def dataset(workdir: Path, rows: int) -> Path:
    path = workdir / f"ohlcv_{rows}.csv"
    if not path.exists():
        started = time.monotonic()
        print(f"generating {path} ({rows:,} rows)...", flush=True)
        generate_csv(path, rows)
        size = path.stat().st_size / 1e6
        print(f"  {size:.0f} MB in {time.monotonic() - started:.0f}s", flush=True)
    return path


# --- database ----------------------------------------------------------------------------------


def fresh_database(admin_url: str) -> str:
    url = create_database(admin_url, BENCH_DB)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_bare (timestamp timestamptz, symbol text, open float8, "
            "high float8, low float8, close float8, volume float8, market_cap float8)"
        )
    return url


def drop_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def scalar(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def checkpoint_pg(url: str) -> None:
    """Flush dirty buffers between steps so one step's writes are not billed to the next."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


# --- measured child processes ------------------------------------------------------------------


@dataclass
class Step:
    name: str
    rows: int
    seconds: float
    peak_rss_mb: float
    detail: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def measured(
    command: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> tuple[float, float, int]:
    """Run ``command``; (wall seconds, peak RSS in MB, exit status)."""
    out = log.open("wb") if log else subprocess.DEVNULL
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    return seconds, usage.ru_maxrss / 1024, proc.returncode


def compile_bytecode() -> float:
    """Compile the interpreter's site-packages and our ``src/`` as the image build does.

    A file that does not compile (some packages ship Python 2 examples) is only left out: the
    step makes starts realistic, it is not a check."""
    started = time.perf_counter()
    site = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    command = [sys.executable, "-m", "compileall", "-q", "-j", "0", *sorted(site)]
    subprocess.run([*command, str(REPO_ROOT / "src")], check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def psql_binary() -> str:
    found = shutil.which("psql")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), reverse=True):
        return str(candidate)
    raise RuntimeError("psql not found (install postgresql-client)")


def run_copy(url: str, csv_path: Path, rows: int, logdir: Path) -> Step:
    command = [
        psql_binary(),
        url,
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        f"\\copy bench_bare FROM '{csv_path}' CSV HEADER",
    ]
    seconds, rss, code = measured(command, log=logdir / "copy.log")
    if code != 0:
        raise RuntimeError(f"\\copy failed; see {logdir / 'copy.log'}")
    loaded = scalar(url, "SELECT count(*) FROM bench_bare")
    assert loaded == rows, f"\\copy loaded {loaded} rows, expected {rows}"
    return Step("\\copy (bare table)", rows, seconds, rss)


def cryptoetl_env(url: str, csv_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTOETL_", "ETL_"))}
    env.update(
        DATABASE_URL=url,
        ENABLED_SOURCES="csv",
        CSV_PATHS=str(csv_path),
        CSV_COLUMN_MAP=GENERATED_COLUMN_MAP,
        LOG_LEVEL="WARNING",
    )
    env.pop("API_DATABASE_URL", None)
    return env


def run_cryptoetl(url: str, csv_path: Path, rows: int, logdir: Path, name: str) -> Step:
    before = scalar(url, "SELECT count(*) FROM runs")
    command = [sys.executable, "-m", "cryptoetl", "worker", "--once", "--source", "csv"]
    log = logdir / f"{name.split()[0]}.log"
    seconds, rss, code = measured(command, env=cryptoetl_env(url, csv_path), log=log)
    if code != 0:
        raise RuntimeError(f"cryptoetl exited {code}; see {log}")
    assert scalar(url, "SELECT count(*) FROM runs") == before + 1
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT processed, inserted, updated, unchanged, rejected, "
            "extract(epoch FROM finished_at - started_at) FROM runs "
            "ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    processed, inserted, updated, unchanged, rejected = (int(v) for v in row[:5])
    run_seconds = float(row[5])
    total = scalar(url, "SELECT count(*) FROM records WHERE source_type = 'csv'")
    assert total == rows, f"records holds {total} csv rows, expected {rows}"
    detail = (
        f"processed {processed:,}, inserted {inserted:,}, updated {updated:,}, "
        f"unchanged {unchanged:,}, rejected {rejected:,}; the run itself (runs table) "
        f"{run_seconds:.3f} s, the rest of the wall time is the process starting"
    )
    return Step(name, rows, seconds, rss, detail)


def dlt_command(csv_path: Path, url: str) -> list[str]:
    child = [str(Path(__file__).resolve()), "--dlt-child", str(csv_path), "--dlt-url", url]
    if importlib.util.find_spec("dlt") is not None:
        return [sys.executable, *child]
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("dlt is not installed and uv is not on PATH (uv sync --group bench)")
    return [uv, "run", "--group", "bench", "python", *child]


def run_dlt(url: str, csv_path: Path, rows: int, logdir: Path) -> Step:
    log = logdir / "dlt.log"
    pipelines_dir = logdir / "dlt_pipelines"
    shutil.rmtree(pipelines_dir, ignore_errors=True)
    env = {**os.environ, "DLT_BENCH_PIPELINES_DIR": str(pipelines_dir)}
    seconds, rss, code = measured(dlt_command(csv_path, url), env=env, log=log)
    if code != 0:
        raise RuntimeError(f"dlt exited {code}; see {log}")
    loaded = scalar(url, f"SELECT count(*) FROM {DLT_DATASET}.ohlcv")
    assert loaded == rows, f"dlt loaded {loaded} rows, expected {rows}"
    return Step("dlt merge", rows, seconds, rss)


def dlt_child(csv_path: Path, url: str) -> None:
    """The dlt pipeline (runs in the bench dependency group's environment)."""
    import dlt

    float_cols = ("open", "high", "low", "close", "volume", "market_cap")
    columns = {name: {"data_type": "double"} for name in float_cols}
    columns["timestamp"] = {"data_type": "timestamp", "nullable": False}
    columns["symbol"] = {"data_type": "text", "nullable": False}

    @dlt.resource(
        name="ohlcv",
        primary_key=("symbol", "timestamp"),
        write_disposition="merge",
        columns=columns,  # type: ignore[arg-type]
    )
    def ohlcv():  # type: ignore[no-untyped-def]
        with csv_path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                yield {
                    "timestamp": datetime.fromisoformat(row["timestamp"]),
                    "symbol": row["symbol"],
                    **{name: float(row[name]) for name in float_cols},
                }

    parts = urlsplit(url)
    if parts.password is None:  # dlt insists on one; trust/peer auth ignores it
        user_host = parts.netloc.rsplit("@", 1)
        user = user_host[0] if len(user_host) == 2 else "postgres"
        netloc = f"{user}:unused@{user_host[-1]}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    pipeline = dlt.pipeline(
        pipeline_name="cryptoetl_bench_ingest",
        pipelines_dir=os.environ.get("DLT_BENCH_PIPELINES_DIR"),
        destination=dlt.destinations.postgres(credentials=url),
        dataset_name=DLT_DATASET,
    )
    print(pipeline.run(ohlcv()))


# --- report ------------------------------------------------------------------------------------


def fmt_table(steps: list[Step]) -> str:
    lines = [
        f"{'step':<28} {'rows':>10} {'wall s':>8} {'rows/s':>10} {'peak RSS MB':>12}",
    ]
    for s in steps:
        lines.append(
            f"{s.name:<28} {s.rows:>10,} {s.seconds:>8.2f} {s.rows_per_s:>10,.0f} "
            f"{s.peak_rss_mb:>12.0f}"
        )
    return "\n".join(lines)


def ratios(steps: dict[str, Step]) -> list[tuple[str, float, str, bool]]:
    """(label, value, target, met) for every ratio the steps allow."""
    found = []
    copy, first = steps.get("copy"), steps.get("first")
    dlt_step, rerun = steps.get("dlt"), steps.get("rerun")
    if copy and first:
        r = first.seconds / copy.seconds
        found.append(
            ("cryptoetl / \\copy time", r, f"<= {TARGET_COPY_RATIO:g}x", r <= TARGET_COPY_RATIO)
        )
    if dlt_step and first:
        r = dlt_step.seconds / first.seconds
        found.append(
            ("dlt / cryptoetl time", r, f">= {TARGET_DLT_RATIO:g}x", r >= TARGET_DLT_RATIO)
        )
    if first and rerun:
        r = rerun.seconds / first.seconds * 100
        found.append(("rerun / first (%)", r, f"< {TARGET_RERUN_PCT:g}%", r < TARGET_RERUN_PCT))
    for key in ("first", "rerun"):
        if step := steps.get(key):
            ok = step.peak_rss_mb < TARGET_RSS_MB
            found.append((f"{step.name} peak RSS MB", step.peak_rss_mb, "< 250", ok))
    return found


@dataclass
class SizeResult:
    rows: int
    steps: dict[str, Step]

    def render(self) -> str:
        out = [f"== {self.rows:,} rows ==", fmt_table(list(self.steps.values()))]
        for step in self.steps.values():
            if step.detail:
                out.append(f"  {step.name}: {step.detail}")
        out.append("")
        out.append(f"{'ratio':<34} {'value':>10} {'target':>10} {'met':>5}")
        for label, value, target, met in ratios(self.steps):
            out.append(f"{label:<34} {value:>10.2f} {target:>10} {'yes' if met else 'NO':>5}")
        return "\n".join(out)


def bench_size(admin_url: str, rows: int, workdir: Path, with_dlt: bool) -> SizeResult:
    csv_path = dataset(workdir, rows)
    logdir = workdir / f"logs_{rows}"
    logdir.mkdir(exist_ok=True)
    url = fresh_database(admin_url)
    steps: dict[str, Step] = {}
    # Warm the page cache for the file so no step pays the first read from disk.
    with csv_path.open("rb") as fh:
        while fh.read(1 << 24):
            pass
    checkpoint_pg(url)
    steps["copy"] = run_copy(url, csv_path, rows, logdir)
    print(f"  {steps['copy'].name}: {steps['copy'].seconds:.2f}s", flush=True)
    checkpoint_pg(url)
    steps["first"] = run_cryptoetl(url, csv_path, rows, logdir, "cryptoetl first run")
    print(f"  {steps['first'].name}: {steps['first'].seconds:.2f}s", flush=True)
    checkpoint_pg(url)
    if with_dlt:
        steps["dlt"] = run_dlt(url, csv_path, rows, logdir)
        print(f"  {steps['dlt'].name}: {steps['dlt'].seconds:.2f}s", flush=True)
        checkpoint_pg(url)
    steps["rerun"] = run_cryptoetl(url, csv_path, rows, logdir, "cryptoetl unchanged rerun")
    print(f"  {steps['rerun'].name}: {steps['rerun'].seconds:.2f}s", flush=True)
    # Put the dlt step after the first run in the table order too.
    order = ["copy", "first", "dlt", "rerun"]
    return SizeResult(rows, {k: steps[k] for k in order if k in steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="repeatable; default 1M and 4M")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cryptoetl_ingest_bench",
        help="generated CSV files (kept between runs) and step logs",
    )
    parser.add_argument("--no-dlt", action="store_true", help="skip dlt")
    parser.add_argument(
        "--dlt-at-every-size", action="store_true", help="run dlt at every size, not only 1M"
    )
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database")
    parser.add_argument("--dlt-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dlt-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dlt_child:
        dlt_child(args.dlt_child, args.dlt_url)
        return
    admin_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    sizes = args.rows or list(SIZES)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"compiled modules to bytecode in {compile_bytecode():.1f}s", flush=True)
    results = []
    try:
        for rows in sizes:
            print(f"-- {rows:,} rows", flush=True)
            with_dlt = not args.no_dlt and (args.dlt_at_every_size or rows == min(sizes))
            results.append(bench_size(admin_url, rows, args.workdir, with_dlt))
    finally:
        if not args.keep_db:
            drop_database(admin_url)
    print()
    for result in results:
        print(result.render())
        print()
    print(f"({os.cpu_count()} CPUs; logs in {args.workdir})")
    print(json.dumps({"ingest": [_as_json(r) for r in results]}))


def _as_json(result: SizeResult) -> dict[str, object]:
    return {
        "rows": result.rows,
        "steps": {
            k: {"seconds": round(s.seconds, 3), "peak_rss_mb": round(s.peak_rss_mb, 1)}
            for k, s in result.steps.items()
        },
    }


if __name__ == "__main__":
    main()
