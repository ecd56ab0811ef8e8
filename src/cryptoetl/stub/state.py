"""The state of one stub app: its replay mode, its active faults and its request log.

Shared by the fault middleware (:mod:`cryptoetl.stub.inject`), the routes and the tests (through
:class:`cryptoetl.stub.server.StubHandle`), so it lives apart from all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from aiohttp import web

from cryptoetl.stub.faults import Fault, parse_faults
from cryptoetl.stub.replay import ReplayMode


class RequestLogEntry(msgspec.Struct, frozen=True):
    """One request the stub received (control endpoints excluded)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    fault: str | None
    time: float


@dataclass
class _ActiveFault:
    fault: Fault
    remaining: int


@dataclass
class StubState:
    """Faults and the request log of one stub app (shared by its handlers and tests)."""

    fixtures_dir: Path
    mode: ReplayMode
    faults: list[_ActiveFault] = field(default_factory=list)
    requests: list[RequestLogEntry] = field(default_factory=list)

    def set_faults(self, faults: Sequence[Fault] | str, *, append: bool = False) -> None:
        parsed = parse_faults(faults) if isinstance(faults, str) else list(faults)
        active = [_ActiveFault(f, f.count) for f in parsed]
        self.faults = [*self.faults, *active] if append else active

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()

    def take_fault(self, path: str) -> Fault | None:
        for active in self.faults:
            if active.remaining > 0 and path.startswith(active.fault.path):
                active.remaining -= 1
                return active.fault
        return None

    def faults_view(self) -> list[dict[str, object]]:
        return [{**msgspec.structs.asdict(a.fault), "remaining": a.remaining} for a in self.faults]


STATE_KEY = web.AppKey("stub_state", StubState)
