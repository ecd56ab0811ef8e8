"""Log formats (JSON and console), secrets redacted in both, and the ACCESS_LOG levels."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from litestar.types import Receive, Scope, Send

from cryptoetl.api.request_context import RequestContext
from cryptoetl.api.request_metrics import request_metrics
from cryptoetl.config import load_settings
from cryptoetl.logs import (
    ACCESS_LOGGERS,
    ConsoleFormatter,
    JsonFormatter,
    access_level,
    configure_logging,
    resolve_format,
)

SECRET = "sentinel-key-0123456789abcdef"


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.makeLogRecord(
        {"name": "cryptoetl.test", "msg": msg, "args": args, "levelname": "INFO", "levelno": 20}
    )
    entry.__dict__.update(extra)
    return entry


def failing_record() -> logging.LogRecord:
    try:
        raise ValueError(f"upstream said {SECRET[:20]}")  # a partial echo
    except ValueError as exc:
        entry = record("run crashed", event="run_error")
        entry.exc_info = (type(exc), exc, exc.__traceback__)
        return entry


def test_json_lines_carry_the_fields_and_redact_secrets() -> None:
    formatter = JsonFormatter(secrets=[SECRET])
    entry = record(
        "calling with %s", SECRET, event="http_retry", url=f"http://x/?key={SECRET}", attempt=2
    )
    line = json.loads(formatter.format(entry))
    assert line["message"] == "calling with ***"
    assert line["url"] == "http://x/?key=***"
    assert (line["event"], line["attempt"], line["level"]) == ("http_retry", 2, "info")
    assert line["logger"] == "cryptoetl.test"
    assert line["timestamp"].endswith("+00:00")


def test_json_traceback_is_redacted_and_objects_become_text() -> None:
    entry = failing_record()
    entry.__dict__["payload"] = object()
    line = json.loads(JsonFormatter(secrets=[SECRET]).format(entry))
    assert "ValueError: upstream said ***" in line["exception"]
    assert line["payload"].startswith("<object object")
    assert SECRET[:8] not in json.dumps(line)


def test_console_lines_are_readable_and_redact_secrets() -> None:
    formatter = ConsoleFormatter(secrets=[SECRET])
    line = formatter.format(
        record("run started", event="run_started", source="csv", token=f"Bearer {SECRET}")
    )
    assert "\n" not in line
    assert not line.startswith("{")
    assert "[info" in line
    assert "run started" in line
    assert "event=run_started" in line
    assert "source=csv" in line
    assert SECRET[:8] not in line
    assert "***" in line
    assert "\x1b[" not in line  # no colours unless asked for


def test_console_lines_leave_out_what_the_message_already_says() -> None:
    line = ConsoleFormatter().format(
        record("GET /rss 200 2.5 ms", event="stub_request", path="/rss", status=200, fault=None)
    )
    assert line.endswith("GET /rss 200 2.5 ms [cryptoetl.test] event=stub_request")


def test_console_traceback_follows_the_line_redacted() -> None:
    text = ConsoleFormatter(secrets=[SECRET]).format(failing_record())
    first, *rest = text.splitlines()
    assert "run crashed" in first
    assert "ValueError: upstream said ***" in "\n".join(rest)
    assert SECRET[:8] not in text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_console_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", Terminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Terminal()) == "json"
    assert resolve_format("console", io.StringIO()) == "console"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the next tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ACCESS_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("log_format", ["json", "console"])
def test_configured_output_redacts_every_configured_secret(log_format: str) -> None:
    stream = io.StringIO()
    settings = load_settings(
        {
            "LOG_FORMAT": log_format,
            "COINGECKO_API_KEY": SECRET,
            "RSS_FEED_URLS": "https://feeds.example/rss?token=feed-token-77aa11",
        }
    )
    configure_logging(settings, stream)
    log = logging.getLogger("cryptoetl.test")
    log.warning("GET failed for %s", SECRET[3:25], extra={"event": "x", "feed": "feed-token-77"})
    log.info("fetching https://feeds.example/rss?token=feed-token-77aa11")
    text = stream.getvalue()
    assert len(text.splitlines()) == 2
    assert text.startswith("{") == (log_format == "json")
    for secret in (SECRET, "feed-token-77aa11"):
        assert not any(secret[i : i + 8] in text for i in range(len(secret) - 7)), text


async def _answer(status: int, scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _serve(statuses: list[int]) -> None:
    """Requests through the API's request context, one per status."""

    async def noop_send(message: object) -> None:
        return None

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    for status in statuses:

        async def app(scope: Scope, receive: Receive, send: Send, status: int = status) -> None:
            await _answer(status, scope, receive, send)

        context = RequestContext(app, request_metrics())
        scope = {"type": "http", "method": "GET", "path": f"/s/{status}", "headers": []}
        await context(scope, receive, noop_send)  # type: ignore[arg-type]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("access_log", "expected"),
    [("all", [200, 302, 404, 503]), ("errors", [404, 503]), ("off", [])],
)
async def test_access_log_levels(access_log: str, expected: list[int]) -> None:
    stream = io.StringIO()
    configure_logging(load_settings({"LOG_FORMAT": "json", "ACCESS_LOG": access_log}), stream)
    await _serve([200, 302, 404, 503])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["status"] for line in lines] == expected
    for line in lines:
        assert line["event"] == "http_request"
        assert line["message"].startswith(f"GET /s/{line['status']} {line['status']} ")
        assert line["level"] == logging.getLevelName(access_level(line["status"])).lower()


def test_access_level_by_status() -> None:
    assert [access_level(s) for s in (200, 304, 400, 499, 500)] == [
        logging.INFO,
        logging.INFO,
        logging.WARNING,
        logging.WARNING,
        logging.ERROR,
    ]
