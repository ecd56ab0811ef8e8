"""Query parameters of the JSON endpoints and the dashboard, as validated and as documented.

Values arrive as text and are validated by :class:`ParamErrors` (one 400
that names every bad parameter). What the OpenAPI schema says matches what is accepted:

* an **empty** value (``?limit=``) means the parameter was not given (its default); the schema
  allows it (``""`` beside the integer range, or in the enum) and says so;
* a parameter the endpoint does not take is a 400 naming it (:func:`reject_unknown`): a typo
  (``?limt=5``) must not be silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import ParameterKwarg

from cryptoetl.api.errors import InvalidParameters
from cryptoetl.api.schemas import ParameterError


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
