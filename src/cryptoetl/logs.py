"""One JSON object per log line on stdout, with secrets scrubbed from every line.

Structured fields come from ``extra={...}`` (run_id, source, event, counts...).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """Render a record as JSON; values of ``secrets`` are replaced by ``***`` everywhere."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if len(s) >= 4)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        line = _encoder.encode(entry).decode() if _encodable(entry) else _fallback(entry)
        return self._scrub(line)

    def _scrub(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line


def _encodable(entry: dict[str, Any]) -> bool:
    try:
        _encoder.encode(entry)
    except (TypeError, msgspec.EncodeError):
        return False
    return True


def _fallback(entry: dict[str, Any]) -> str:
    return _encoder.encode(
        {k: v if _encodable({k: v}) else str(v) for k, v in entry.items()}
    ).decode()


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter stays at WARNING unless we debug.
    for noisy in ("aiohttp.access", "sqlalchemy.engine", "asyncio", "granian.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
