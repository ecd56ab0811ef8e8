"""HTML to plain text."""

from __future__ import annotations

import pytest

from cryptoetl.sources.rss import html_to_text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>a</p><p>b</p>", "a b"),
        ("x<br>y<br/>z", "x y z"),
        ("<b>bold</b>text", "boldtext"),
        ("AT&amp;T &lt;3 &euro;5 &#8364;6", "AT&T <3 €5 €6"),
        ("<style>p{}</style><script>x()</script>visible", "visible"),
        ("  lots \n\t of   space  ", "lots of space"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("<div><p>unclosed", "unclosed"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_html_to_text_caps_length_at_a_word() -> None:
    text = html_to_text("<p>" + "word " * 1000 + "</p>")
    assert len(text) <= 2000
    assert text.endswith("word…")
