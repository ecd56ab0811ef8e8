"""RSS 2.0 / RSS 1.0 / Atom news feeds, fetched conditionally and parsed with feedparser.

Each configured feed is one conditional GET (``If-None-Match`` / ``If-Modified-Since`` from the
cursor); a ``304 Not Modified`` costs no parsing. Feeds in the wild are often broken, so
whatever feedparser recovers from an ill-formed feed is kept and the problem is reported as a
batch warning; only a body with nothing feed-like in it is an error. One failing feed does not
stop the others: it becomes a warning, and the run fails only when every feed failed.

A feed yields one batch (feeds carry tens of entries, far below any batch size); a feed of more
than ``MAX_ITEMS_PER_PAGE`` entries is refused like any other bad body.

**Credentials in feed URLs** (``?token=...``, ``user:pass@``) are needed to fetch, and shown or
stored nowhere: a feed is known by its redacted URL (``redact_url``) in the cursor, raw keys,
``metadata.feed`` and every message, and every string taken from its entries goes through the
settings' redactor, since private feeds quote their own URL, token included, in links.

The modules, from the body to the source:

* :mod:`.text` -- HTML to plain text, whitespace, cutting at a word;
* :mod:`.entries` -- one entry's fields, identity and raw payload, :func:`entry_to_record`;
* :mod:`.feed` -- :func:`parse_feed`: feedparser, warnings, empty summaries stripped first;
* :mod:`.source` -- :class:`RssSource`: conditional GETs and the per-feed cursor.
"""

from cryptoetl.sources.rss.feed import parse_feed, without_empty_summaries
from cryptoetl.sources.rss.source import RssSource
from cryptoetl.sources.rss.text import html_to_text

__all__ = ["RssSource", "html_to_text", "parse_feed", "without_empty_summaries"]
