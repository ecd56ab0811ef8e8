"""The RSS source: :class:`RssSource` fetches each configured feed conditionally
(``If-None-Match`` / ``If-Modified-Since`` from its cursor entry) and keeps the per-feed state,
known by the feed's redacted URL, in the ``{"feeds": {...}}`` cursor."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from cryptoetl.config import Settings
from cryptoetl.redaction import redact_url
from cryptoetl.sources.base import Batch, JsonDict, SourceError, SourceType
from cryptoetl.sources.http import HttpClient
from cryptoetl.sources.rss.feed import parse_feed


def _feeds_state(cursor: Mapping[str, Any], known: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored state of the ``known`` feeds (by shown URL); any other entry is dropped.

    Dropping the others also removes, at the first run after an upgrade, entries stored under
    a URL in clear when credentials were not yet redacted.
    """
    feeds = cursor.get("feeds")
    if not isinstance(feeds, Mapping):
        return {}
    wanted = set(known)
    return {
        url: dict(state)
        for url, state in feeds.items()
        if url in wanted and isinstance(state, Mapping)
    }


def conditional_headers(state: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(etag := state.get("etag"), str) and etag:
        headers["If-None-Match"] = etag
    if isinstance(modified := state.get("last_modified"), str) and modified:
        headers["If-Modified-Since"] = modified
    return headers


class RssSource:
    """Every feed of ``settings.rss_feed_urls``; one batch per feed."""

    source_type: ClassVar[SourceType] = "rss"

    def __init__(self, settings: Settings, http: HttpClient) -> None:
        self._settings = settings
        self._http = http
        self._redactor = settings.redactor()
        # Each configured URL (with its credentials, to fetch) and how it is shown and stored.
        self._feeds = [(url, self._redactor(redact_url(url))) for url in settings.rss_feed_urls]

    async def _feed_batch(self, url: str, shown: str, feeds: dict[str, dict[str, Any]]) -> Batch:
        """Fetch and parse one feed, updating ``feeds[shown]`` when a new body arrived."""
        state = feeds.get(shown, {})
        response = await self._http.get(
            url, headers=conditional_headers(state), accept_statuses=frozenset({200, 304})
        )
        if response.status == 304:
            return Batch()
        fetched_at = datetime.now(UTC)
        batch = parse_feed(
            response.body,
            feed_url=shown,
            content_type=response.headers.get("content-type"),
            fetched_at=fetched_at,
            base_url=response.url or shown,
            redactor=self._redactor,
            max_items=self._settings.max_items_per_page,
        )
        feeds[shown] = {
            "etag": response.headers.get("etag"),
            "last_modified": response.headers.get("last-modified"),
            "last_fetch": fetched_at.isoformat(),
        }
        return batch

    async def batches(self, cursor: JsonDict, batch_size: int) -> AsyncIterator[Batch]:
        """One batch per feed, each carrying the whole ``{"feeds": {...}}`` cursor so far."""
        feeds = _feeds_state(cursor, (shown for _, shown in self._feeds))
        failures: list[str] = []
        for url, shown in self._feeds:
            try:
                batch = await self._feed_batch(url, shown, feeds)
            except SourceError as exc:
                # The feed keeps its old cursor entry, so the next run retries it in full.
                reason = self._redactor(str(exc))
                failures.append(f"{shown}: {reason}")
                batch = Batch(warnings=[f"feed {shown} failed: {reason}"])
            batch.cursor = {"feeds": copy.deepcopy(feeds)}
            yield batch
        if self._feeds and len(failures) == len(self._feeds):
            raise SourceError(f"all {len(self._feeds)} feeds failed: " + "; ".join(failures))
