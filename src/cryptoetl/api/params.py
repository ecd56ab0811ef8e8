"""Query parameters of the JSON endpoints and the dashboard, as validated and as documented.

Values arrive as text and are validated by :class:`~cryptoetl.api.errors.ParamErrors` (one 400
that names every bad parameter). What the OpenAPI schema says matches what is accepted:

* an **empty** value (``?limit=``) means the parameter was not given (its default); the schema
  allows it (``""`` beside the integer range, or in the enum) and says so;
* a parameter the endpoint does not take is a 400 naming it (:func:`reject_unknown`): a typo
  (``?limt=5``) must not be silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from litestar import Request
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import ParameterKwarg

from cryptoetl.api.errors import ParamErrors

EMPTY_MEANS_DEFAULT = "An empty value means the parameter is not given."


def integer(description: str, low: int, high: int, default: int | None = None) -> ParameterKwarg:
    """An integer in [low, high], or empty."""
    shown = f"{description} ({low}-{high}" + (f", default {default})" if default else ")")
    return ParameterKwarg(
        description=f"{shown}. {EMPTY_MEANS_DEFAULT}",
        schema_extra={
            "type": None,
            "one_of": None,
            "any_of": [
                Schema(type=OpenAPIType.INTEGER, minimum=low, maximum=high),
                Schema(type=OpenAPIType.STRING, max_length=0),
            ],
        },
    )


def choice(description: str, allowed: Sequence[str]) -> ParameterKwarg:
    """One of ``allowed``, or empty."""
    return ParameterKwarg(
        description=f"{description}. {EMPTY_MEANS_DEFAULT}",
        schema_extra={"type": "string", "one_of": None, "enum": [*allowed, ""]},
    )


def text(description: str, max_length: int, **extra: Any) -> ParameterKwarg:
    """Free text of at most ``max_length`` characters (surrounding blanks ignored), or empty."""
    return ParameterKwarg(
        description=f"{description}. {EMPTY_MEANS_DEFAULT}",
        schema_extra={"type": "string", "one_of": None, "max_length": max_length, **extra},
    )


def run_id(description: str) -> ParameterKwarg:
    """A run's UUID, or empty."""
    return ParameterKwarg(
        description=f"{description}. {EMPTY_MEANS_DEFAULT}",
        schema_extra={
            "type": None,
            "one_of": None,
            "any_of": [
                Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID),
                Schema(type=OpenAPIType.STRING, max_length=0),
            ],
        },
    )


def reject_unknown(
    request: Request[Any, Any, Any], known: Iterable[str], errors: ParamErrors
) -> None:
    """Add an error for every query parameter the endpoint does not take."""
    errors.unknown(request.query_params.keys(), known)
