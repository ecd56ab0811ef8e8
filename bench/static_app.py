"""The static ceiling of bench/api_bench.py: Litestar on Granian answering fixed bytes (the
API's own page 1, read once from ``STATIC_BODY_FILE``) from memory. No handler that does any
work can beat it."""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, Response, get

BODY = Path(os.environ["STATIC_BODY_FILE"]).read_bytes()


@get("/data", sync_to_thread=False)
def data() -> Response[bytes]:
    return Response(BODY, media_type="application/json")


app = Litestar([data])
