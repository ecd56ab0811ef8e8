"""Where the children of ``cryptoetl dev`` listen and what environment they get."""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from cryptoetl.dev.options import LOOPBACK, Options

UPSTREAM_VARIABLES = ("COINPAPRIKA_BASE_URL", "COINGECKO_BASE_URL", "RSS_FEED_URLS")


def upstream_configured(env: Mapping[str, str]) -> bool:
    return any(env.get(name, "").strip() for name in UPSTREAM_VARIABLES)


def stub_env(base_url: str) -> dict[str, str]:
    """The worker's upstream URLs for a stub at ``base_url`` (the real paths, see stub/routes)."""
    return {
        "COINPAPRIKA_BASE_URL": base_url,
        "COINGECKO_BASE_URL": f"{base_url}/api/v3",
        "RSS_FEED_URLS": f"{base_url}/rss",
    }


def service_env(
    base: Mapping[str, str], database_url: str, fixtures: Path, stub_url: str | None
) -> dict[str, str]:
    """Environment of the cryptoetl children."""
    env = dict(base)
    env["DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    # The children write into our pipes, so their own "auto" would pick JSON; what counts is
    # where *we* write: readable lines on a terminal, JSON in a container or a log file.
    if not env.get("LOG_FORMAT", "").strip() and sys.stdout.isatty():
        env["LOG_FORMAT"] = "console"
    if not env.get("CSV_PATHS", "").strip():
        env["CSV_PATHS"] = str(fixtures / "csv")
    if stub_url is not None:
        env.update(stub_env(stub_url))
    return env


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when ``port`` can be bound on ``host`` (as the API is about to)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def api_port(options: Options, env: Mapping[str, str]) -> int:
    if options.port is not None:
        return options.port
    raw = env.get("API_PORT", "").strip()
    return int(raw) if raw.isdigit() else 8000
