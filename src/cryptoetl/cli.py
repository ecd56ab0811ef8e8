"""The `cryptoetl` command: worker, api, stub-upstream, migrate, wait-for-schema, dev.

Settings are read once, when a subcommand starts; a bad value prints one line naming the
variable and exits with status 2 (``--help`` needs no configuration). A database problem that
stops a command (unreachable within its wait, a refused login, a schema to migrate: see
:mod:`cryptoetl.db.errors`) prints one line naming the cause and the fix, and exits with 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptoetl import __version__
from cryptoetl.config import (
    SOURCE_TYPES,
    Settings,
    exit_with_error,
    load_settings,
    load_settings_or_exit,
)
from cryptoetl.db.errors import DatabaseTrouble
from cryptoetl.logs import configure_logging

# `cryptoetl migrate` waits this long for its database by default: long enough for a database
# container's first start (initdb, init scripts), short enough to fail a broken deployment fast.
MIGRATE_WAIT_S = 60.0
# An init container waits for its migration Job; a first migration of an empty database is quick,
# but the Job's pod may have to be scheduled and its image pulled first.
SCHEMA_WAIT_S = 600.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptoetl",
        description="Crypto market data and news ETL into PostgreSQL, with a read-only HTTP API.",
    )
    parser.add_argument("--version", action="version", version=f"cryptoetl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser("worker", help="run the ingestion daemon (or one pass with --once)")
    worker.add_argument(
        "--once",
        action="store_true",
        help="one pass, then exit 0 if all succeeded, else 1 (waits DB_WAIT_S for the database)",
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
    stub.add_argument("--port", type=int, default=8900, help="port (default 8900)")
    stub.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    stub.add_argument(
        "--fixtures",
        type=Path,
        default=Path("fixtures"),
        help="folder of recorded responses (default ./fixtures)",
    )
    stub.add_argument("--faults", default="", help="fault spec (see cryptoetl.stub.faults)")
    stub.add_argument(
        "--frozen",
        action="store_true",
        default=None,
        help="replay the recorded bytes exactly (default: live, moved to now; STUB_FROZEN=1)",
    )
    stub.add_argument(
        "--seed", type=int, help="live: the price walk's seed (default STUB_SEED, else 0)"
    )
    stub.add_argument(
        "--step",
        type=int,
        metavar="SECONDS",
        help="live: seconds between two upstream refreshes (default STUB_STEP_S, else 60)",
    )

    migrate = sub.add_parser(
        "migrate", help="alembic upgrade head against DATABASE_URL, once the database answers"
    )
    migrate.add_argument(
        "--wait",
        type=float,
        default=MIGRATE_WAIT_S,
        metavar="SECONDS",
        help=f"retry the first connection for up to this long (default {MIGRATE_WAIT_S:.0f})",
    )

    schema = sub.add_parser(
        "wait-for-schema",
        help="exit 0 once the database (API_DATABASE_URL, else DATABASE_URL) is at the "
        "migrations' head; an init container for pods that must not start before it",
    )
    schema.add_argument(
        "--timeout",
        type=float,
        default=SCHEMA_WAIT_S,
        metavar="SECONDS",
        help=f"give up (exit 1) after this long (default {SCHEMA_WAIT_S:.0f})",
    )

    from cryptoetl import dev

    dev.add_arguments(
        sub.add_parser(
            "dev",
            help="everything in one process tree: PostgreSQL (embedded unless DATABASE_URL is "
            "set), migrations, stub upstream, worker, API",
            description=dev.DESCRIPTION,
        )
    )
    return parser


def _settings(*required: Callable[[Settings], object]) -> Settings:
    """Settings for a subcommand (a missing required value exits 2), and its logging."""
    settings = load_settings_or_exit(*required)
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
    from granian.constants import Interfaces, Loops

    settings = _settings(Settings.require_api_database_url)
    Granian(
        "cryptoetl.api.app:app",
        address=args.host or settings.api_host,
        port=args.port or settings.api_port,
        interface=Interfaces.ASGI,
        workers=args.workers or settings.api_workers,
        log_access=False,  # the app writes its own JSON access line with the request id
        # uvloop, not asyncio's loop: asyncpg's reads and Granian's hand-over of each request
        # go through the loop, about a quarter of an uncached request's CPU; uvloop gave ~9 %
        # more uncached /data requests per second (three alternating wrk runs each, two workers).
        loop=Loops.uvloop,
    ).serve()
    return 0


def _stub(args: argparse.Namespace) -> int:
    from cryptoetl.stub.replay import replay_mode
    from cryptoetl.stub.server import serve

    _settings()  # for logging configuration
    try:
        mode = replay_mode(frozen=args.frozen, seed=args.seed, step_s=args.step)
    except ValueError as exc:
        exit_with_error(str(exc), 2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(args.port, args.fixtures, host=args.host, faults=args.faults or None, mode=mode)
        )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from cryptoetl.migrate import run_alembic_upgrade, wait_for_database

    url = _settings(Settings.require_database_url).require_database_url()
    asyncio.run(wait_for_database(url, args.wait))
    return run_alembic_upgrade()


def _wait_for_schema(args: argparse.Namespace) -> int:
    from cryptoetl.migrate import wait_for_schema

    url = _settings(Settings.require_api_database_url).require_api_database_url()
    return 0 if asyncio.run(wait_for_schema(url, args.timeout)) else 1


def _dev(args: argparse.Namespace) -> int:
    from cryptoetl import dev

    return dev.run(dev.options_from(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "worker": _worker,
        "api": _api,
        "stub-upstream": _stub,
        "migrate": _migrate,
        "wait-for-schema": _wait_for_schema,
        "dev": _dev,
    }
    try:
        return handlers[args.command](args)
    except DatabaseTrouble as exc:
        # The handler read the settings already: read again, they are valid.
        exit_with_error(load_settings().redactor()(exc.problem.line()), 1)


if __name__ == "__main__":
    raise SystemExit(main())
