"""Log lines for machines (JSON) or for people (console), with secrets redacted in both.

Our code logs through the standard library (``logger.info("run started", extra={...})``);
structlog's :class:`~structlog.stdlib.ProcessorFormatter` renders each record:

* ``LOG_FORMAT=json``: one JSON object per line — ``timestamp``, ``level``, ``logger``,
  ``message``, then every ``extra`` field (``event``, ``source``, ``run_id``, counts...), and
  ``exception`` (the traceback text) when there is one;
* ``LOG_FORMAT=console``: one readable line — time, level, message, logger, ``event`` and the
  other ``key=value`` fields, less those the message already shows (``GET /rss 200 14.3 ms``
  needs no ``status=200``) and those that are None; a traceback follows on its own lines;
* ``LOG_FORMAT=auto`` (the default): console when stdout is a terminal, JSON otherwise (in
  containers, under systemd, in CI).

Every string of a line, tracebacks included, goes through the one :class:`Redactor` before it
is rendered: a secret is replaced by ``***`` whatever the format. Tracebacks are plain text
without local variables, which could hold a request's headers.

**Access lines** (the API's ``cryptoetl.api.access``, the stub upstream's
``cryptoetl.stub.access``) are logged at :func:`access_level` of their status: INFO below 400,
WARNING for 4xx, ERROR for 5xx. ``ACCESS_LOG`` sets those loggers' threshold: ``all``,
``errors`` (4xx and 5xx only, the default: on a quiet day most lines would be access lines),
or ``off``. It is independent of ``LOG_LEVEL``, which governs every other line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from cryptoetl.config import AccessLog, LogFormat, Settings
from cryptoetl.redaction import Redactor

ACCESS_LOGGERS = ("cryptoetl.api.access", "cryptoetl.stub.access")
ACCESS_THRESHOLDS: dict[AccessLog, int] = {
    "all": logging.INFO,
    "errors": logging.WARNING,
    "off": logging.CRITICAL + 10,  # above every level: nothing passes
}
# alembic.runtime.plugins: a line per plugin whenever the worker reads the migrations' heads.
_NOISY_LOGGERS = (
    "aiohttp.access",
    "sqlalchemy.engine",
    "asyncio",
    "granian.access",
    "alembic.runtime.plugins",
)
_CONSOLE_FIELDS = frozenset({"timestamp", "level", "logger", "message", "event", "exception"})
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_encoder = msgspec.json.Encoder()


def access_level(status: int) -> int:
    """The level of an access line for a response ``status``."""
    if status >= 500:
        return logging.ERROR
    if status >= 400:
        return logging.WARNING
    return logging.INFO


# --------------------------------------------------------------------------- processors


def _record_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Our line layout from a stdlib record: the message, then the ``extra`` fields."""
    record: logging.LogRecord = event_dict["_record"]
    fields: EventDict = {
        "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": event_dict["event"],
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD_ATTRS and not key.startswith("_"):
            fields[key] = value
    for key in ("exc_info", "stack_info"):
        if key in event_dict:
            fields[key] = event_dict[key]
    return fields


def _json_safe(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Values JSON cannot hold become their ``str`` (before redaction sees them)."""
    return {key: value if _encodable(value) else str(value) for key, value in event_dict.items()}


def _encodable(value: Any) -> bool:
    try:
        _encoder.encode(value)
    except (TypeError, msgspec.EncodeError):
        return False
    return True


class _Redact:
    """Processor: every string of the line through the redactor."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        redacted: EventDict = self._redactor.redact_json(event_dict)
        return redacted


def _without_echoed_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Console only: drop fields that are None or whose value is a word of the message."""
    words = set(str(event_dict.get("message", "")).split())
    return {
        key: value
        for key, value in event_dict.items()
        if key in _CONSOLE_FIELDS or (value is not None and str(value) not in words)
    }


def _render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    return _encoder.encode(event_dict).decode()


def _processors(secrets: Iterable[str], *renderer: Processor) -> list[Processor]:
    return [
        # Tracebacks become text here, so the redactor sees them and no renderer formats the
        # live exception (with its local variables) after redaction.
        structlog.processors.format_exc_info,
        _json_safe,
        _Redact(Redactor(secrets)),
        *renderer,
    ]


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """One JSON object per line; every configured secret is replaced by ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(
            foreign_pre_chain=[_record_fields], processors=_processors(secrets, _render_json)
        )


class ConsoleFormatter(structlog.stdlib.ProcessorFormatter):
    """One readable line per record (colours on a terminal); secrets replaced by ``***``."""

    def __init__(self, secrets: Iterable[str] = (), *, colors: bool = False) -> None:
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors,
            event_key="message",
            pad_event_to=0,
            sort_keys=False,
            exception_formatter=structlog.dev.plain_traceback,
        )
        super().__init__(
            foreign_pre_chain=[_record_fields],
            processors=_processors(secrets, _without_echoed_fields, renderer),
        )


def resolve_format(log_format: LogFormat, stream: TextIO) -> LogFormat:
    """``auto`` is ``console`` on a terminal and ``json`` anywhere else."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route every log record to ``stream`` (stdout) in ``settings``' format and levels."""
    out = stream or sys.stdout
    secrets = settings.secret_values()
    formatter: logging.Formatter
    if resolve_format(settings.log_format, out) == "console":
        formatter = ConsoleFormatter(secrets, colors=out.isatty())
    else:
        formatter = JsonFormatter(secrets)
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ACCESS_LOGGERS:
        logging.getLogger(name).setLevel(ACCESS_THRESHOLDS[settings.access_log])
    # Third-party chatter stays at WARNING unless we debug.
    level = logging.getLevelName(settings.log_level)
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level))
