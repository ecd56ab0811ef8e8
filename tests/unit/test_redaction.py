"""The one redaction rule: whole secrets, partial echoes, redact-then-cut, URLs."""

from __future__ import annotations

import time

import pytest
from yarl import URL

from cryptoetl.redaction import (
    MASK,
    PARTIAL_SECRET_CHARS,
    Redactor,
    is_secret_name,
    redact_url,
    url_credentials,
)

KEY = "CG-0123456789abcdefghijklmnopqr"  # 31 characters


def no_part_of(secret: str, text: str) -> bool:
    width = PARTIAL_SECRET_CHARS
    return not any(secret[i : i + width] in text for i in range(len(secret) - width + 1))


def test_whole_secrets_are_replaced_longest_first() -> None:
    redact = Redactor(["abcd1234", "abcd1234-and-more", "", "ab"])
    assert redact("x abcd1234-and-more y abcd1234 ab") == "x *** y *** ab"


def test_secrets_shorter_than_four_characters_are_ignored() -> None:
    assert Redactor(["abc"])("abc") == "abc"
    assert Redactor(["abcd"])("abcd") == MASK


@pytest.mark.parametrize(
    "echo",
    [
        KEY[:30],  # the issue: an excerpt cut one character short of the key
        KEY[:8],  # the shortest prefix that counts
        KEY[-9:],  # a suffix
        KEY[10:22],  # the middle
        f"{KEY[:12]}…",  # someone else's cut, with its ellipsis
    ],
)
def test_partial_echoes_of_eight_characters_or_more_are_replaced(echo: str) -> None:
    text = Redactor([KEY])(f"Invalid API key: {echo} (see docs)")
    assert no_part_of(KEY, text)
    assert text.startswith("Invalid API key: ***")
    assert text.endswith(" (see docs)")


def test_seven_characters_are_not_a_partial_echo() -> None:
    assert Redactor([KEY])(f"id {KEY[:7]} ok") == f"id {KEY[:7]} ok"


def test_adjacent_and_overlapping_fragments_become_one_mask() -> None:
    assert Redactor([KEY])(f"{KEY[:12]}{KEY[5:20]}!") == f"{MASK}!"


def test_truncate_redacts_before_cutting() -> None:
    redact = Redactor([KEY])
    text = f"HTTP 200: Invalid API key {KEY} for this plan"
    for limit in range(1, len(text) + 5):
        cut = redact.truncate(text, limit)
        assert len(cut) <= limit
        assert no_part_of(KEY, cut)
        assert KEY[:4] not in cut  # not even a short prefix: the key was masked before the cut
    assert redact.truncate("short", 10) == "short"
    assert redact.truncate("zyxwvutsrqponm", 10) == "zyxwvutsr…"


def test_excerpt_is_one_line() -> None:
    assert Redactor([KEY]).excerpt(f"line one\n\t{KEY}\n  line two", 200) == "line one *** line two"


def test_redact_json_walks_keys_values_and_lists_but_keeps_other_types() -> None:
    stamp = time.gmtime(0)
    value = {"url": f"x?key={KEY}", KEY: [KEY[:20], 3, None], "when": stamp, "t": (KEY,)}
    redacted = Redactor([KEY]).redact_json(value)
    assert redacted == {"url": "x?key=***", MASK: [MASK, 3, None], "when": stamp, "t": [MASK]}
    assert redacted["when"] is stamp  # a struct_time is a tuple, but not one to walk


def test_with_secrets_adds_to_the_known_ones() -> None:
    redact = Redactor([KEY]).with_secrets(["request-token-1"])
    assert redact(f"{KEY} request-token-1") == "*** ***"
    assert set(redact.secrets) == {KEY, "request-token-1"}


def test_a_text_without_secrets_is_returned_as_is() -> None:
    text = "GET http://127.0.0.1:8900/api/v3/coins/markets?page=1 failed (HTTP 503)"
    assert Redactor([KEY, "sentinel-db-password"])(text) is text


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("x-cg-demo-api-key", True),
        ("x_cg_demo_api_key", True),
        ("token", True),
        ("Cookie", True),
        ("client_secret", True),
        ("If-None-Match", False),
        ("page", False),
        ("vs_currency", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pw@api.example.com/v3/x?page=2&x_cg_demo_api_key=abc&token=t#frag",
            "https://user:***@api.example.com/v3/x?page=2&x_cg_demo_api_key=***&token=***#frag",
        ),
        ("https://tok-123456@feeds.example/rss", "https://***@feeds.example/rss"),
        ("postgresql://etl:hunter2@db:5432/x", "postgresql://etl:***@db:5432/x"),
        ("postgresql://postgres@db/x", "postgresql://postgres@db/x"),  # a role, not a secret
        ("postgresql://u:secretpw@h:notaport/db", "postgresql://u:***@h:notaport/db"),
        ("/v1/tickers?quotes=USD&api_key=k123", "/v1/tickers?quotes=USD&api_key=***"),
        ("https://h/p?token=&page=1", "https://h/p?token=&page=1"),  # nothing to hide
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_takes_yarl_urls() -> None:
    assert redact_url(URL("https://h/p?key=abc")) == "https://h/p?key=***"


def test_url_credentials_raw_and_decoded() -> None:
    assert url_credentials("https://u:p%40ss@h/x?api_key=K%2B1&page=2") == [
        "p%40ss",
        "K%2B1",
        "p@ss",
        "K+1",
    ]
    assert url_credentials("https://tok-123456@h/rss") == ["tok-123456"]
    assert url_credentials("postgresql://postgres@db/x") == []
    assert url_credentials("https://h/rss") == []
