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
from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from cryptoetl.api.request_context import request_id_of
from cryptoetl.api.schemas import ErrorBody, ParameterError
from cryptoetl.db.errors import DatabaseProblem, Kind, classify

log = logging.getLogger("cryptoetl.api")

JSON = "application/json"

_DESCRIPTIONS = {400: "Invalid parameters", 404: "Not found", 503: "Database unavailable or busy"}


def error_responses(*statuses: int, not_found: str | None = None) -> dict[int, ResponseSpec]:
    """The OpenAPI entries of the error answers a route gives: every one an :class:`ErrorBody`."""
    described = {**_DESCRIPTIONS, **({404: not_found} if not_found else {})}
    return {
        status: ResponseSpec(ErrorBody, description=described[status], generate_examples=False)
        for status in statuses
    }


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


_encoder = msgspec.json.Encoder()


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
