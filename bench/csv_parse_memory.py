"""CSV parser throughput and peak memory for growing files (a script, not a test).

    uv run python bench/csv_parse_memory.py [N ...]        # default: 100000 1000000

For each N a CSV of N rows (4 coins, one row per coin and minute, Yahoo-like columns) is
written to a temporary directory, then a fresh child process reads it through
``CsvSource.iter_batches`` (the synchronous core of ``batches``), dropping each batch as the
pipeline would after committing it. The child prints rows/s and its peak RSS
(``resource.getrusage(...).ru_maxrss``): a fresh process per N, so each peak is that run's own,
and a streaming parser shows (about) the same peak for 100k and 1M rows.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

COINS = (("BTC", 30000.0), ("ETH", 2000.0), ("SOL", 100.0), ("XRP", 0.5))
BATCH_SIZE = 5000


def generate(path: str, rows: int) -> None:
    """Write ``rows`` data rows, streaming (the generator must not hold them either)."""
    start = datetime(2015, 1, 1, tzinfo=UTC)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("Date,Symbol,Open,High,Low,Close,Volume,Market Cap\n")
        for i in range(rows):
            symbol, base = COINS[i % len(COINS)]
            when = start + timedelta(minutes=i // len(COINS))
            price = base * (1 + ((i * 7919) % 1000 - 500) / 10000)
            out.write(
                f"{when:%Y-%m-%d %H:%M:%S},{symbol},{price * 0.99:.4f},{price * 1.01:.4f},"
                f"{price * 0.98:.4f},{price:.4f},{(i % 997) * 1000.5:.2f},{price * 19e6:.0f}\n"
            )


def measure(path: str) -> None:
    """Child process: parse the file, print one result line."""
    from cryptoetl.config import Settings
    from cryptoetl.sources.csv import CsvSource

    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # The generated "Volume" says no unit: declared, so every value column is parsed (as the
    # pre-series parser did) and the figures stay comparable.
    settings = Settings(
        database_url=None,
        api_database_url=None,
        csv_paths=(path,),
        csv_column_map="bench_*.csv:volume_unit=base",
    )
    source = CsvSource(settings)
    records = rejects = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for batch in source.iter_batches({}, BATCH_SIZE):
        records += len(batch.records)
        rejects += len(batch.rejects)
    elapsed = time.perf_counter() - started
    # CPU time too: on a shared machine wall time also measures the neighbours.
    cpu = time.process_time() - cpu_started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = records + rejects
    size_mib = os.path.getsize(path) / 2**20
    print(
        f"N={rows:>9,}  records={records:>9,}  rejects={rejects}  "
        f"wall {elapsed:5.2f} s = {rows / elapsed:>7,.0f} rows/s  "
        f"cpu {cpu:5.2f} s = {rows / cpu:>7,.0f} rows/s  peak RSS {peak_kb / 1024:5.1f} MiB "
        f"(after imports {before_kb / 1024:5.1f} MiB)  file {size_mib:.0f} MiB",
        flush=True,
    )


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--child":
        measure(argv[1])
        return
    sizes = [int(a) for a in argv] or [100_000, 1_000_000]
    print(f"python {sys.version.split()[0]}, batch_size={BATCH_SIZE}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"bench_{n}.csv")
            generate(path, n)
            subprocess.run([sys.executable, __file__, "--child", path], check=True)
            os.remove(path)


if __name__ == "__main__":
    main(sys.argv[1:])
