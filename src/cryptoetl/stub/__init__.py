"""A stub upstream replaying recorded files on loopback, with fault injection (tests, demos)."""

from cryptoetl.stub.server import (
    Fault,
    RequestLogEntry,
    StubHandle,
    StubState,
    build_app,
    parse_faults,
    running_stub,
    serve,
)

__all__ = [
    "Fault",
    "RequestLogEntry",
    "StubHandle",
    "StubState",
    "build_app",
    "parse_faults",
    "running_stub",
    "serve",
]
