"""A stub upstream replaying recorded files on loopback, live or frozen, with fault injection."""

from cryptoetl.stub.replay import FROZEN, Frozen, Live, ReplayMode, replay_mode
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
    "FROZEN",
    "Fault",
    "Frozen",
    "Live",
    "ReplayMode",
    "RequestLogEntry",
    "StubHandle",
    "StubState",
    "build_app",
    "parse_faults",
    "replay_mode",
    "running_stub",
    "serve",
]
