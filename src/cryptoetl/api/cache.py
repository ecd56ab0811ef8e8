"""Encoded responses kept in memory, exact because PostgreSQL says when they go stale.

Every write transaction of the worker that changes normalized data ends with
``NOTIFY cryptoetl_data, '<source>'`` (:data:`~cryptoetl.db.notify.DATA_CHANGED`), which
PostgreSQL delivers only when it commits. Each API process listens
(:mod:`cryptoetl.api.listener`) and drops every cached response that read that source. So a
cached response never outlives the commit that changed it by more than the notification's
delivery (on one host, well under a millisecond), and a commit to one source leaves the pages
of the others cached.

* Nothing is cached while the listener is not connected: without notifications there is no
  way to know what changed. Losing the connection, and connecting again, empties the cache.
* A response computed while one of its sources changed is not stored (its tag generations
  moved between the start of the query and the store): it may hold the state before the commit.
* Bounded: at most :data:`MAX_ENTRIES` responses and :data:`MAX_BYTES` bytes, least recently
  used first out.

A response is kept without its per-request fields: ``request_id`` and ``api_latency_ms`` are
spliced in for every answer, so they stay true for each request. Its strong ``ETag`` is the
hash of everything else, the same for every request while the data is unchanged; a request
with a matching ``If-None-Match`` gets a ``304`` without touching the database.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

MAX_ENTRIES = 2048
MAX_BYTES = 64 << 20
# Placeholders encoded where the per-request values go, then cut out (see ``Cached.make``).
REQUEST_ID_PLACEHOLDER = "00000000-0000-4000-8000-cac4eca4eca4"
LATENCY_PLACEHOLDER = 0.00012345678
_MARKER = (
    b'"request_id":"'
    + REQUEST_ID_PLACEHOLDER.encode()
    + b'","api_latency_ms":'
    + repr(LATENCY_PLACEHOLDER).encode()
)


@dataclass(frozen=True, slots=True)
class Cached:
    head: bytes  # the body up to the request id
    tail: bytes  # the body after the latency
    etag: str
    tags: frozenset[str]

    @classmethod
    def make(cls, body: bytes, tags: Iterable[str]) -> Cached:
        """Split a body encoded with the placeholders; its ETag covers what stays fixed."""
        head, tail = body.split(_MARKER, 1)
        digest = hashlib.blake2b(head + b"\0" + tail, digest_size=16).digest()
        etag = '"' + base64.urlsafe_b64encode(digest).rstrip(b"=").decode() + '"'
        return cls(head, tail, etag, frozenset(tags))

    def body(self, request_id: str, latency_ms: float) -> bytes:
        return b"".join(
            (
                self.head,
                b'"request_id":"',
                request_id.encode(),
                b'","api_latency_ms":',
                repr(latency_ms).encode(),
                self.tail,
            )
        )

    @property
    def size(self) -> int:
        return len(self.head) + len(self.tail)


Token = tuple[int, tuple[int, ...]]


class ResponseCache:
    """The process's cache of encoded responses (see the module doc)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: OrderedDict[Hashable, Cached] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._epoch = 0  # moves on every (dis)connection of the listener
        self._generations: dict[str, int] = {}
        self.live = False

    def get(self, key: Hashable) -> Cached | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def token(self, tags: Iterable[str]) -> Token:
        """Taken before a response's queries run: :meth:`put` refuses it if a tag moved."""
        return self._epoch, tuple(self._generations.get(t, 0) for t in sorted(tags))

    def put(self, key: Hashable, entry: Cached, token: Token) -> None:
        if not self.live or token != self.token(entry.tags) or entry.size > self._max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._entries[key] = entry
        self._bytes += entry.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def invalidate(self, tag: str) -> None:
        """Data of ``tag`` (a source) changed: drop what read it."""
        self._generations[tag] = self._generations.get(tag, 0) + 1
        stale = [key for key, entry in self._entries.items() if tag in entry.tags]
        for key in stale:
            self._bytes -= self._entries.pop(key).size

    def reset(self, *, live: bool) -> None:
        """The listener (dis)connected: whatever happened meanwhile is unknown."""
        self._epoch += 1
        self._entries.clear()
        self._bytes = 0
        self.live = live

    def __len__(self) -> int:
        return len(self._entries)
