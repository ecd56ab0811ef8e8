"""A stub upstream replaying recorded files on loopback, live or frozen, with fault injection."""

from cryptoetl.stub.faults import Fault, parse_faults
from cryptoetl.stub.replay import FROZEN, Frozen, Live, ReplayMode, replay_mode
from cryptoetl.stub.server import StubHandle, build_app, running_stub, serve
from cryptoetl.stub.state import RequestLogEntry, StubState

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
