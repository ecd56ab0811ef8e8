"""Text of feed values: HTML fragments to plain text, whitespace collapsed, cut at a word."""

from __future__ import annotations

from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

SUMMARY_MAX_CHARS = 2000
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment; block tags become spaces, scripts vanish."""

    _BLOCK_TAGS = frozenset(
        {"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td"}
        | {"th", "blockquote", "pre", "hr", "section", "article", "header", "footer"}
        | {"figure", "figcaption", "table", "dd", "dt"}
    )
    _SKIPPED_TAGS = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities are unescaped in handle_data
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag in self._BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self._BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit - 100:
        cut = cut[:space]
    return cut.rstrip() + "…"


def html_to_text(html: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """Plain text of an HTML fragment: tags dropped, entities unescaped, whitespace collapsed."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        # html.parser gives up on some malformed markup; keep what it collected so far.
        pass
    return truncate(collapse_whitespace("".join(parser.parts)), limit)


def detail_text(value: str, detail: Any, limit: int) -> str:
    """Text of a feedparser value, stripped as HTML only when its detail says it is HTML."""
    kind = detail.get("type") if isinstance(detail, Mapping) else None
    if kind is None or kind in _HTML_TYPES:
        return html_to_text(value, limit)
    return truncate(collapse_whitespace(value), limit)
