"""The embedded PostgreSQL of ``cryptoetl dev`` (the ``pgserver`` wheel), or DATABASE_URL's."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptoetl.dev.console import DevError

DEV_DATABASE = "cryptoetl"


@dataclass
class Database:
    url: str
    embedded: bool
    stop: Callable[[], None] = field(default=lambda: None)


def start_embedded_postgres(data_dir: Path, database: str = DEV_DATABASE) -> Database:
    """Start (or join) the pgserver instance in ``data_dir/pg`` and make sure ``database`` exists.

    Blocking; pgserver stops the server when the last handle on it is cleaned up.
    """
    try:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (harmless)
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError:
        raise DevError(
            "pgserver is not installed: install the `embedded` extra "
            "(pip install 'cryptoetl[embedded]'; `uv sync` does) or set DATABASE_URL"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    try:
        asyncio.run(_create_database(str(server.get_uri("postgres")), database))
    except BaseException:
        server.cleanup()
        raise
    return Database(url=str(server.get_uri(database)), embedded=True, stop=server.cleanup)


async def _create_database(admin_url: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
