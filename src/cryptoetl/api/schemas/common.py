"""Shared by every JSON body: the per-request metadata and the error body."""

from __future__ import annotations

import msgspec


class Meta(msgspec.Struct, kw_only=True):
    """Per-request metadata carried in every JSON body (the same id as ``X-Request-ID``)."""

    request_id: str
    api_latency_ms: float


class ParameterError(msgspec.Struct, kw_only=True):
    parameter: str
    message: str


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every non-2xx JSON answer: a stable ``error`` code, a human message, the request id."""

    error: str
    message: str
    request_id: str
    detail: list[ParameterError] = msgspec.field(default_factory=list)
