"""Error answers: parameter validation, 404, database problems, and the 500 of last resort.

Every error body is :class:`~cryptoetl.api.schemas.ErrorBody` with the request id. Nothing from
an exception's text reaches a client: database errors can carry host names, SQL or a URL, so
bodies use fixed messages and the detail goes to the (secret-scrubbed) log only.

A database problem (:func:`cryptoetl.db.errors.classify`) is a 503 whose ``error`` names its
kind: ``database_unavailable``, ``database_busy``, ``database_refused`` (the reader's login,
database or privileges) or ``database_not_migrated`` (run ``cryptoetl migrate``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.types import ExceptionHandlersMap

from cryptoetl.api.schemas import ErrorBody, ParameterError
from cryptoetl.db.errors import DatabaseProblem, Kind, classify

log = logging.getLogger("cryptoetl.api")

JSON = "application/json"


class ApiError(Exception):
    """An error with a fixed status, code and client-safe message."""

    status_code = 500
    error = "internal_error"

    def __init__(self, message: str, detail: Sequence[ParameterError] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.detail = list(detail)


class InvalidParameters(ApiError):
    status_code = 400
    error = "invalid_parameters"


class NotFound(ApiError):
    status_code = 404
    error = "not_found"


# The fixed answer (error code, message) to each kind of database problem but "busy".
_UNAVAILABLE_ANSWERS: dict[Kind, tuple[str, str]] = {
    "unavailable": ("database_unavailable", "the database is unavailable; retry shortly"),
    "refused": (
        "database_refused",
        "the database refused the API's login, database name or privileges; "
        "check API_DATABASE_URL and the reader role",
    ),
    "schema": (
        "database_not_migrated",
        "the database schema is missing or older than this version; run `cryptoetl migrate`",
    ),
}


class DatabaseUnavailable(ApiError):
    """The database cannot serve us: unreachable, refusing the login, or not migrated."""

    status_code = 503
    error = "database_unavailable"

    def __init__(self, problem: DatabaseProblem | None = None) -> None:
        self.error, message = _UNAVAILABLE_ANSWERS[problem.kind if problem else "unavailable"]
        super().__init__(message)
        self.problem = problem


class DatabaseBusy(ApiError):
    """Reachable but not answering in time: a statement or lock timeout, or no free
    connection. Distinct from unavailable, so operators look at locks and load, not the
    network."""

    status_code = 503
    error = "database_busy"

    def __init__(
        self,
        message: str = "the database did not answer in time (busy or locked); retry shortly",
        problem: DatabaseProblem | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem


def database_error(problem: DatabaseProblem) -> DatabaseUnavailable | DatabaseBusy:
    """The answer to a database problem."""
    if problem.kind == "busy":
        return DatabaseBusy(problem=problem)
    return DatabaseUnavailable(problem)


def database_problem(exc: BaseException) -> DatabaseProblem | None:
    """:func:`~cryptoetl.db.errors.classify` for the API's login (``API_DATABASE_URL``)."""
    return classify(exc, "API_DATABASE_URL")


class ParamErrors:
    """Collects every bad parameter of a request so one 400 names them all."""

    def __init__(self) -> None:
        self.items: list[ParameterError] = []

    def add(self, parameter: str, message: str) -> None:
        self.items.append(ParameterError(parameter=parameter, message=message))

    def raise_if_any(self) -> None:
        if self.items:
            names = ", ".join(dict.fromkeys(e.parameter for e in self.items))
            raise InvalidParameters(f"invalid parameters: {names}", self.items)

    def single(self, params: Mapping[str, Sequence[str]]) -> Callable[[str], str | None]:
        """A getter for parameters that take one value (given twice is an error)."""

        def one(name: str) -> str | None:
            values = params.get(name) or ()
            if len(values) > 1:
                self.add(name, "must be given once")
            return values[-1] if values else None

        return one

    def unknown(self, params: Iterable[str], known: Iterable[str]) -> None:
        """Every parameter the route does not take is an error (a typo must not be ignored)."""
        allowed = sorted(known)
        for name in sorted(set(params) - set(allowed)):
            self.add(name[:40], f"is not a parameter of this endpoint; known: {', '.join(allowed)}")

    def integer(self, name: str, raw: str | None, default: int, low: int, high: int) -> int:
        """An integer in [low, high]; ``default`` when absent or empty."""
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            self.add(name, f"must be an integer, got {_show(raw)}")
            return default
        if value < low:
            self.add(name, f"must be >= {low}")
        elif value > high:
            self.add(name, f"must be <= {high}")
        return value

    def choice(self, name: str, raw: str | None, allowed: Sequence[str]) -> str | None:
        if raw is None or raw == "":
            return None
        if raw not in allowed:
            self.add(name, f"must be one of {', '.join(allowed)}; got {_show(raw)}")
            return None
        return raw

    def choices(self, name: str, raws: Iterable[str], allowed: Sequence[str]) -> tuple[str, ...]:
        """A repeatable and/or comma-separated parameter: ``a&x=b`` and ``x=a,b`` both work."""
        values = {v.strip() for raw in raws for v in raw.split(",") if v.strip()}
        unknown = sorted(values - set(allowed))
        if unknown:
            shown = ", ".join(_show(v) for v in unknown)
            self.add(name, f"unknown value(s) {shown}; allowed: {', '.join(allowed)}")
        return tuple(sorted(values & set(allowed)))

    def text(self, name: str, raw: str | None, max_length: int = 200) -> str | None:
        if raw is None:
            return None
        value = raw.strip()
        if len(value) > max_length:
            self.add(name, f"must be at most {max_length} characters")
            return None
        if "\x00" in value:
            # PostgreSQL text cannot hold NUL: say so instead of failing in the driver.
            self.add(name, "must not contain NUL characters")
            return None
        return value or None

    def timestamp(self, name: str, raw: str | None) -> datetime | None:
        """ISO 8601; a value without offset is UTC. A ``+`` left unencoded in the query string
        arrives as a space (``...T10:00:00 02:00``), which we read back as ``+``."""
        if raw is None or raw.strip() == "":
            return None
        text = raw.strip()
        if " " in text and text.rsplit(" ", 1)[1][:2].isdigit() and "T" in text:
            head, tail = text.rsplit(" ", 1)
            text = f"{head}+{tail}"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            self.add(name, f"must be an ISO 8601 date or timestamp, got {_show(raw)}")
            return None
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC.
            self.add(name, f"is outside the supported range of dates, got {_show(raw)}")
            return None


def _show(raw: str) -> str:
    """Echo a bad value safely: short, and as a JSON-ish quoted string."""
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


# --- handlers ---------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def request_id_of(request: Request[Any, Any, Any]) -> str:
    rid = request.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else "-"


def latency_ms(request: Request[Any, Any, Any]) -> float:
    """Milliseconds since the request context middleware saw the request."""
    return elapsed_ms(request.scope.get("state", {}).get("request_started"))


def elapsed_ms(started: object) -> float:
    """Milliseconds since ``started`` (a ``perf_counter`` value), floored to microseconds."""
    if not isinstance(started, float):
        return 0.0
    elapsed = (time.perf_counter() - started) * 1000
    return math.floor(elapsed * 1000) / 1000


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    error: str,
    message: str,
    detail: Sequence[ParameterError] = (),
) -> Response[bytes]:
    body = ErrorBody(
        error=error, message=message, request_id=request_id_of(request), detail=list(detail)
    )
    return Response(_encoder.encode(body), status_code=status, media_type=JSON)


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    if isinstance(exc, DatabaseUnavailable | DatabaseBusy):
        log.warning(
            exc.error.replace("_", " "),
            extra={
                "event": exc.error,
                "request_id": request_id_of(request),
                "path": request.url.path,
                "error": exc.problem.line() if exc.problem else None,
            },
        )
    return error_response(request, exc.status_code, exc.error, exc.message, exc.detail)


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """Litestar's own parsing errors (path parameters, unknown types) in our format."""
    detail = [
        ParameterError(parameter=str(item.get("key", "?")), message=str(item.get("message", "")))
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    return error_response(request, 400, "invalid_parameters", "invalid parameters", detail)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc, NotFoundException):
        return error_response(request, 404, "not_found", "no such resource")
    code = exc.status_code
    error = "method_not_allowed" if code == 405 else "http_error"
    return error_response(request, code, error, exc.detail if code < 500 else "server error")


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    problem = database_problem(exc)
    if problem is not None:
        return _api_error(request, database_error(problem))
    # The traceback goes to the log (secrets scrubbed there), never into the body.
    log.exception(
        "unhandled error",
        extra={
            "event": "unhandled_error",
            "request_id": request_id_of(request),
            "path": request.url.path,
        },
    )
    return error_response(request, 500, "internal_error", "internal server error")


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ApiError: _api_error,
        ValidationException: _validation,
        HTTPException: _http,
        Exception: _unexpected,
    }
