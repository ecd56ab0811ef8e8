"""Run every benchmark and print their tables: the API (bench/api_bench.py) and the ingest
(bench/ingest_bench.py), one after the other (never at once: they would share the CPU).

    uv run python bench/run_all.py                 # defaults of both benches
    uv run python bench/run_all.py --quick         # smaller: 200k-row API table, 1M-row ingest
    uv run python bench/run_all.py --only ingest -- --rows 1000000

Arguments after ``--`` go to the selected bench (with ``--only``). Both read
``BENCH_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) and create
their own databases. Exits non-zero if a bench fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def run(name: str, args: list[str]) -> int:
    print(f"\n{'=' * 30} {name} {'=' * 30}", flush=True)
    started = time.monotonic()
    code = subprocess.call([sys.executable, str(BENCH_DIR / f"{name}_bench.py"), *args])
    print(f"({name} bench: {time.monotonic() - started:.0f}s, exit {code})", flush=True)
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("api", "ingest"))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    parser.add_argument("extra", nargs="*", help="arguments for the bench chosen with --only")
    args = parser.parse_args()
    plan = {
        "api": ["--rows", "200000", "--duration", "5", "--rounds", "1"] if args.quick else [],
        "ingest": ["--rows", "1000000"] if args.quick else [],
    }
    if args.only:
        plan = {args.only: args.extra or plan[args.only]}
    elif args.extra:
        parser.error("extra arguments need --only")
    failed = [name for name, bench_args in plan.items() if run(name, bench_args) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
