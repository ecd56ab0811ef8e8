"""What a body may be: at most ``settings.http_max_body_bytes`` (counted after decompression as
it is streamed), and never an echo of a credential the request sent in a header."""

from __future__ import annotations

import aiohttp

from cryptoetl.sources.http._request import _Request
from cryptoetl.sources.http._responses import HttpResponse, UpstreamError, status_text

READ_CHUNK_BYTES = 64 * 1024


async def read_body(request: _Request, resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, counted as it is read (decompressed); refused past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            status = status_text(resp.status, None)
            raise UpstreamError(
                f"GET {request.display_url}: {status}: the response body exceeds "
                f"HTTP_MAX_BODY_BYTES={limit} bytes (counted after decompression); "
                "stopped reading it"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def refuse_echoed_credentials(request: _Request, response: HttpResponse, shown_status: str) -> None:
    """Raise :class:`UpstreamError` if the body holds a credential sent in a header."""
    for name, value in request.sent_credentials:
        if value.encode() in response.body:
            raise UpstreamError(
                f"GET {request.display_url}: {shown_status}: the response body contains the "
                f"credential sent in the {name} header; body refused"
            )
