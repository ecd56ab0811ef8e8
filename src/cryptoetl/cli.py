"""The `cryptoetl` command: worker, api, stub-upstream, migrate.

Settings are read once, when a subcommand starts; a bad value prints one line naming the
variable and exits with status 2 (``--help`` needs no configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptoetl.config import SOURCE_TYPES, ConfigError, Settings, load_settings_or_exit
from cryptoetl.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptoetl",
        description="Crypto market data and news ETL into PostgreSQL, with a read-only HTTP API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser("worker", help="run the ingestion daemon (or one pass with --once)")
    worker.add_argument(
        "--once", action="store_true", help="one pass, then exit 0 if all succeeded, else 1"
    )
    worker.add_argument(
        "--source",
        action="append",
        choices=SOURCE_TYPES,
        default=[],
        help="with --once: only this source (repeatable)",
    )
    worker.add_argument(
        "--check",
        action="store_true",
        help="liveness probe: exit 0 if a worker on this host sent a heartbeat lately",
    )

    api = sub.add_parser("api", help="serve the read-only HTTP API with Granian")
    api.add_argument("--host", help="bind address (default API_HOST)")
    api.add_argument("--port", type=int, help="port (default API_PORT)")
    api.add_argument("--workers", type=int, help="Granian worker processes (default API_WORKERS)")

    stub = sub.add_parser(
        "stub-upstream", help="replay recorded upstream responses on loopback (tests, demos)"
    )
    stub.add_argument("--port", type=int, default=8900)
    stub.add_argument("--host", default="127.0.0.1")
    stub.add_argument(
        "--fixtures", type=Path, default=Path("fixtures"), help="folder of recorded responses"
    )
    stub.add_argument("--faults", default="", help="fault spec (see cryptoetl.stub.server)")

    sub.add_parser("migrate", help="alembic upgrade head against DATABASE_URL")
    return parser


def _settings(*required: Callable[[Settings], object]) -> Settings:
    """Settings for a subcommand; a missing required value exits 2 with one line."""
    settings = load_settings_or_exit()
    for requirement in required:
        try:
            requirement(settings)
        except ConfigError as exc:
            print(f"cryptoetl: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    configure_logging(settings)
    return settings


def _worker(args: argparse.Namespace) -> int:
    settings = _settings(Settings.require_database_url)
    from cryptoetl.pipeline.daemon import Worker, check_liveness

    if args.check:
        return 0 if asyncio.run(check_liveness(settings)) else 1
    worker = Worker(settings)

    async def main() -> int:
        worker.install_signal_handlers()
        if args.once:
            return 0 if await worker.run_once(args.source) else 1
        await worker.run_forever()
        return 0

    return asyncio.run(main())


def _api(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import Interfaces

    settings = _settings(Settings.require_api_database_url)
    Granian(
        "cryptoetl.api.app:app",
        address=args.host or settings.api_host,
        port=args.port or settings.api_port,
        interface=Interfaces.ASGI,
        workers=args.workers or settings.api_workers,
        log_access=False,  # the app writes its own JSON access line with the request id
    ).serve()
    return 0


def _stub(args: argparse.Namespace) -> int:
    from cryptoetl.stub.server import serve

    _settings()  # for logging configuration
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.fixtures, host=args.host, faults=args.faults or None))
    return 0


def _migrate(_: argparse.Namespace) -> int:
    _settings(Settings.require_database_url)
    ini = Path(__file__).resolve().parents[2] / "alembic.ini"
    command = [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"]
    return subprocess.call(command, env=os.environ.copy())  # noqa: S603 (fixed argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"worker": _worker, "api": _api, "stub-upstream": _stub, "migrate": _migrate}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
