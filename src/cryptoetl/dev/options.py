"""The command line of ``cryptoetl dev``: its options and their defaults.

Imported whenever ``cryptoetl``'s parser is built, so it imports nothing heavy.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
# Where the embedded PostgreSQL keeps its data when --data-dir is not given (the image sets it
# to its volume, /data: nothing else in the image is writable).
DATA_DIR_VARIABLE = "DEV_DATA_DIR"
LOOPBACK = "127.0.0.1"
DESCRIPTION = (
    "Run PostgreSQL (embedded unless DATABASE_URL is set), the migrations, the stub upstream "
    "(unless an upstream URL is configured), the worker and the API in the foreground. "
    "Ctrl-C or SIGTERM stops everything; the exit status is 0 after such a stop."
)


@dataclass(frozen=True)
class Options:
    port: int | None
    data_dir: Path
    fixtures: Path
    host: str = LOOPBACK
    api: bool = True
    worker: bool = True
    stub: bool | None = None  # None: only when no upstream URL is configured
    exit_status_file: Path | None = None


def default_data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get(DATA_DIR_VARIABLE, "").strip() or PROJECT_ROOT / ".dev-data")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cryptoetl dev`` (``just dev`` passes its arguments through)."""
    parser.add_argument(
        "--host",
        default=LOOPBACK,
        help="address the API binds (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    parser.add_argument("--port", type=int, help="API port (default: API_PORT, else 8000)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(os.environ),
        help=f"where the embedded PostgreSQL keeps its data, in <data-dir>/pg "
        f"(default: {DATA_DIR_VARIABLE}, else .dev-data in the checkout)",
    )
    parser.add_argument(
        "--fixtures",
        type=Path,
        default=PROJECT_ROOT / "fixtures",
        help="recorded upstream responses and sample CSV files (default: fixtures/)",
    )
    parser.add_argument("--no-api", dest="api", action="store_false", help="do not start the API")
    parser.add_argument(
        "--no-worker", dest="worker", action="store_false", help="do not start the worker"
    )
    parser.add_argument(
        "--stub",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the upstreams from the stub (default: unless an upstream URL is configured)",
    )
    parser.add_argument(
        "--exit-status-file",
        type=Path,
        help="also write the exit status to this file (`just dev` reports it from there)",
    )


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir.resolve(),
        fixtures=args.fixtures.resolve(),
        api=args.api,
        worker=args.worker,
        stub=args.stub,
        exit_status_file=args.exit_status_file,
    )
