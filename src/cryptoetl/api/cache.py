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
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import xxhash

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
    route: str  # the route's path template, for the metrics of answers given before routing

    @classmethod
    def make(cls, body: bytes, route: str) -> Cached:
        """Split a body encoded with the placeholders; its ETag covers what stays fixed."""
        # The marker sits in the metadata at the end: searching from the end finds it at once.
        head, _, tail = body.rpartition(_MARKER)
        # A tag only has to change with the bytes, not resist forgery: XXH3-128 hashes a
        # 37 KB page in 2 µs where SHA-256 took 29 µs, a tenth of rendering it afresh.
        hasher = xxhash.xxh3_128(head)
        hasher.update(b"\0")
        hasher.update(tail)
        digest = hasher.digest()
        etag = '"' + base64.urlsafe_b64encode(digest).rstrip(b"=").decode() + '"'
        return cls(head, tail, etag, route)

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
V = TypeVar("V")


class TaggedCache(Generic[V]):
    """Values tagged with the sources they were read from (see the module doc); used for
    encoded responses and for totals."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        size: Callable[[V], int] = lambda _: 1,
    ) -> None:
        self._entries: OrderedDict[Hashable, tuple[V, frozenset[str]]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._size = size
        self._bytes = 0
        self._epoch = 0  # moves on every (dis)connection of the listener
        self._generations: dict[str, int] = {}
        self.live = False

    def get(self, key: Hashable) -> V | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        self._entries.move_to_end(key)
        return hit[0]

    def token(self, tags: Iterable[str]) -> Token:
        """Taken before a value's queries run: :meth:`put` refuses it if a tag moved since."""
        return self._epoch, tuple(self._generations.get(t, 0) for t in sorted(tags))

    def put(self, key: Hashable, value: V, tags: Iterable[str], token: Token) -> None:
        tagset = frozenset(tags)
        size = self._size(value)
        if not self.live or token != self.token(tagset) or size > self._max_bytes:
            return
        self._drop(key)
        self._entries[key] = (value, tagset)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        hit = self._entries.pop(key, None)
        if hit is not None:
            self._bytes -= self._size(hit[0])

    def invalidate(self, tag: str) -> None:
        """Data of ``tag`` (a source) changed: drop what read it."""
        self._generations[tag] = self._generations.get(tag, 0) + 1
        for key in [k for k, (_, tags) in self._entries.items() if tag in tags]:
            self._drop(key)

    def reset(self, *, live: bool) -> None:
        """The listener (dis)connected: whatever happened meanwhile is unknown."""
        self._epoch += 1
        self._entries.clear()
        self._bytes = 0
        self.live = live

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries


def response_cache() -> TaggedCache[Cached]:
    return TaggedCache(size=lambda entry: entry.size)


def totals_cache() -> TaggedCache[Any]:
    """For totals, and for what time-window totals are estimated from."""
    return TaggedCache(max_entries=4096)
