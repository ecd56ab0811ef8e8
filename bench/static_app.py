"""The static ceiling of bench/api_bench.py: Granian answering fixed bytes (the API's own page
1, read once from ``STATIC_BODY_FILE``) from memory through a bare ASGI callable, with the
headers the API sends. No framework, no handler: what no design of ours can beat, since the API
answers cached pages through the same server and interface."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BODY = Path(os.environ["STATIC_BODY_FILE"]).read_bytes()
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
    (b"etag", b'"static"'),
    (b"cache-control", b"no-cache"),
    (b"x-request-id", b"00000000-0000-4000-8000-000000000000"),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
