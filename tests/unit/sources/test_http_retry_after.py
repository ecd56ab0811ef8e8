"""Pure tests of the HTTP policy helpers: Retry-After parsing, token bucket, excerpts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from cryptoetl.redaction import Redactor
from cryptoetl.sources.http import (
    RateLimiter,
    TokenBucket,
    body_excerpt,
    is_retryable_status,
    retry_after_seconds,
    status_text,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("86400", 86400.0)],
)
def test_delta_seconds(value: str, expected: float) -> None:
    assert retry_after_seconds(value, NOW) == expected


def test_http_date_in_the_future() -> None:
    value = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert value.endswith("GMT")
    assert retry_after_seconds(value, NOW) == pytest.approx(30.0)


def test_http_date_in_the_past_means_now() -> None:
    value = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
    assert retry_after_seconds(value, NOW) == 0.0


def test_http_date_exact_rfc_example() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 60.0


def test_http_date_with_numeric_zone() -> None:
    assert retry_after_seconds("Sat, 01 Mar 2025 13:00:10 +0100", NOW) == 10.0


def test_http_date_without_zone_is_gmt() -> None:
    assert retry_after_seconds("Sat, 01 Mar 2025 12:00:05 -0000", NOW) == 5.0


def test_obsolete_rfc850_date() -> None:
    assert retry_after_seconds("Saturday, 01-Mar-25 12:01:00 GMT", NOW) == 60.0


@pytest.mark.parametrize("value", ["", "   ", "-5", "soon", "1e3", "12 s", "Mon, 99 Foo 2025"])
def test_unparseable_values(value: str) -> None:
    assert retry_after_seconds(value, NOW) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *[(429, True), (500, True), (502, True), (503, True), (504, True), (599, True)],
        *[(400, False), (401, False), (403, False), (404, False), (422, False), (304, False)],
    ],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_status_text() -> None:
    assert status_text(401, "Unauthorized") == "HTTP 401 Unauthorized"
    assert status_text(503, None) == "HTTP 503 Service Unavailable"
    assert status_text(599, "") == "HTTP 599"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_then_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, capacity=2, clock=clock)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)
    assert bucket.reserve() == pytest.approx(2.0)  # queued behind the previous reservation
    clock.now += 10.0  # refills, but never above capacity
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)


def test_rate_limiter_per_host() -> None:
    limiter = RateLimiter({"API.example.com": 60}, default_rpm=600, burst=1)
    assert limiter.delay_for("api.example.com") == 0.0
    assert limiter.delay_for("api.example.com") == pytest.approx(1.0, abs=0.05)
    assert limiter.delay_for("other.example.com") == 0.0
    assert limiter.delay_for("other.example.com") == pytest.approx(0.1, abs=0.05)


def test_rate_limiter_zero_rpm_means_unlimited() -> None:
    limiter = RateLimiter({"h": 0}, default_rpm=600, burst=1)
    assert [limiter.delay_for("h") for _ in range(5)] == [0.0] * 5


def test_body_excerpt_is_one_redacted_line_of_200_chars() -> None:
    body = b"error:\n  key s3cr3t-key rejected " + b"x" * 500
    excerpt = body_excerpt(body, Redactor(["s3cr3t-key"]))
    assert excerpt.startswith("error: key *** rejected x")
    assert len(excerpt) == 200
    assert excerpt.endswith("…")
    assert "s3cr3t" not in excerpt


def test_body_excerpt_redacts_before_cutting() -> None:
    key = "CG-0123456789abcdefghijklmnopqrs"  # 31 characters, the case
    body = ("Invalid API key: " + key).encode()
    for limit_cut in range(len(body)):
        # However the body is cut, no 8 characters of the key survive.
        excerpt = body_excerpt(body[: limit_cut + 1] + b" " * 10, Redactor([key]))
        assert not any(key[i : i + 8] in excerpt for i in range(len(key) - 7))
