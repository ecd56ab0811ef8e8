"""Hostile upstreams: the fault kinds that answer with a response of their own.

``echo_key``, ``redirect``, ``gzip_bomb``, ``endless`` and ``huge_json`` (see
:mod:`cryptoetl.stub.faults`): each is streamed, so the stub holds none of it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from aiohttp import web

from cryptoetl.stub.faults import Fault

STREAM_CHUNK_BYTES = 64 * 1024
MIB = 1 << 20


async def hostile_response(fault: Fault, request: web.Request) -> web.StreamResponse:
    if fault.kind == "echo_key":
        return web.Response(text=f"Invalid API key {_sent_key(request)}; check your plan.")
    if fault.kind == "redirect":
        location = fault.location.rstrip("/") + request.path_qs
        return web.Response(status=fault.redirect_status, headers={"Location": location})
    if fault.kind == "gzip_bomb":
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return await _stream(request, _gzip_bomb(fault.size_bytes), headers)
    if fault.kind == "endless":
        return await _stream(request, _endless(), {"Content-Type": "application/json"})
    return await _stream(request, _huge_json(fault.items), {"Content-Type": "application/json"})


def _sent_key(request: web.Request) -> str:
    for name in ("x-cg-demo-api-key", "Authorization"):
        if value := request.headers.get(name):
            return value
    return next((v for k, v in request.query.items() if "key" in k.lower()), "(none)")


async def _stream(
    request: web.Request, chunks: Iterator[bytes], headers: dict[str, str]
) -> web.StreamResponse:
    """Send ``chunks`` as a chunked body until they end or the client goes away."""
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped reading (that is the point) and closed the connection
    return response


def _gzip_bomb(size_bytes: int) -> Iterator[bytes]:
    """A gzip stream of ``size_bytes`` zeros: one MiB block, compressed once, repeated.

    A full flush ends each compressed block on a byte boundary with no back-reference, so the
    same bytes can follow themselves; the trailer's CRC is only computed if someone reads that
    far.
    """
    zeros = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip header, no name, no time
    blocks, rest = divmod(size_bytes, MIB)
    for _ in range(blocks):
        yield block
    last = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    yield last.compress(bytes(rest)) + last.flush()
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    yield struct.pack("<II", zlib.crc32(bytes(rest), crc), size_bytes & 0xFFFFFFFF)


def _endless() -> Iterator[bytes]:
    item = b'{"id":"endless","symbol":"END","name":"Endless"},'
    chunk = item * (STREAM_CHUNK_BYTES // len(item))
    yield b"["
    while True:
        yield chunk


def _huge_json(items: int) -> Iterator[bytes]:
    per_chunk = 1000
    yield b"["
    for start in range(0, items, per_chunk):
        coins = (
            f'{{"id":"coin-{n}","symbol":"C{n}","name":"Coin number {n}","current_price":1.5,'
            f'"market_cap":{n * 1000},"market_cap_rank":{n + 1},"total_volume":12345.0,'
            f'"price_change_percentage_24h":0.5,"last_updated":"2024-11-05T12:00:00.000Z"}}'
            for n in range(start, min(items, start + per_chunk))
        )
        yield (b"," if start else b"") + ",".join(coins).encode()
    yield b"]"
