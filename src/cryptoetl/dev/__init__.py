"""``cryptoetl dev`` (``just dev``, the image's default command): the whole service, one tree.

In the foreground, in this order:

1. PostgreSQL: ``DATABASE_URL`` when set; otherwise an embedded server from the ``pgserver``
   wheel (the ``embedded`` extra, installed in the image and in the dev environment) with its
   data in ``<data-dir>/pg`` and a database ``cryptoetl``.
2. ``cryptoetl migrate`` (``alembic upgrade head``).
3. Unless real upstream URLs are configured (any of ``COINPAPRIKA_BASE_URL``,
   ``COINGECKO_BASE_URL``, ``RSS_FEED_URLS`` set), the stub upstream on a free loopback port,
   replaying ``<fixtures>``; the worker is pointed at it. ``CSV_PATHS`` defaults to
   ``<fixtures>/csv``.
4. ``cryptoetl worker`` and ``cryptoetl api`` (on ``--host``, default 127.0.0.1, and ``--port``
   or ``API_PORT`` or 8000).

Every child's output is streamed with a ``name |`` prefix. Ctrl-C or SIGTERM stops the children
(SIGTERM, a grace period, then SIGKILL) and then the embedded PostgreSQL; the exit status is 0
after such a stop and 1 when a child died on its own or a step failed.

One module per concern: ``options`` (the command line), ``console`` (the prefixed output and the
error of a failed step), ``database`` (the embedded PostgreSQL), ``environment`` (ports and the
children's environment), ``children`` (starting, streaming and stopping a child process) and
``supervisor`` (the run itself, in the order above). Only :func:`run` imports ``supervisor``, so
building the command line (``cryptoetl --help``, ``cryptoetl worker``) loads no HTTP client.
"""

from __future__ import annotations

import asyncio
import os

from cryptoetl.dev.database import start_embedded_postgres
from cryptoetl.dev.environment import (
    UPSTREAM_VARIABLES,
    free_port,
    port_is_free,
    service_env,
    upstream_configured,
)
from cryptoetl.dev.options import DESCRIPTION, PROJECT_ROOT, Options, add_arguments, options_from

__all__ = [
    "DESCRIPTION",
    "PROJECT_ROOT",
    "UPSTREAM_VARIABLES",
    "Options",
    "add_arguments",
    "free_port",
    "options_from",
    "port_is_free",
    "run",
    "service_env",
    "start_embedded_postgres",
    "upstream_configured",
]


def run(options: Options) -> int:
    """``cryptoetl dev``: the exit status (also written to ``--exit-status-file``)."""
    # Here, not at the top: the supervisor's HTTP client (aiohttp) loads only when dev runs.
    from cryptoetl.dev.supervisor import DevRun

    status = asyncio.run(DevRun(options, os.environ).run())
    if options.exit_status_file is not None:
        options.exit_status_file.parent.mkdir(parents=True, exist_ok=True)
        options.exit_status_file.write_text(f"{status}\n")
    return status
