"""`cryptoetl api` (Granian) as a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.pg import TestDatabase


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def api_server(
    db: TestDatabase, log_path: Path, *args: str, pid: list[int] | None = None
) -> AsyncIterator[str]:
    """`cryptoetl api` on a free loopback port, logged in as the read-only reader; ``args`` go
    to the command line, the server's pid into ``pid`` when given."""
    port = _free_port()
    env = db.env(API_DATABASE_URL=db.reader_url, LOG_LEVEL="WARNING")
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cryptoetl",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
            env=env,
            stdout=log,
            stderr=log,
        )
        if pid is not None:
            pid.append(proc.pid)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            async with httpx.AsyncClient(base_url=base, timeout=2) as client:
                while True:
                    assert proc.returncode is None, log_path.read_text()[-2000:]
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/health")).status_code == 200:
                            break
                    assert time.monotonic() < deadline, log_path.read_text()[-2000:]
                    await asyncio.sleep(0.2)
            yield base
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
