"""How the stub replays its fixtures: frozen (the recorded bytes) or live (moved to now).

``cryptoetl stub-upstream`` is live unless ``--frozen`` (or ``STUB_FROZEN=1``); ``--seed`` /
``STUB_SEED`` (default 0) picks the price walk, ``--step`` / ``STUB_STEP_S`` (default 60) the
seconds between two upstream refreshes. :func:`replay_mode` resolves them; tests pass a mode to
``running_stub`` instead: :data:`FROZEN` where they compare with the fixtures' exact values, a
:class:`Live` with a clock of their own where they move time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptoetl.stub.live import (
    DEFAULT_SEED,
    DEFAULT_STEP_S,
    Moment,
    live_feed,
    live_markets,
    live_tickers,
)

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


class ReplayMode(Protocol):
    """What the routes serve for a fixture's bytes."""

    def markets(self, body: bytes) -> bytes: ...

    def tickers(self, body: bytes) -> bytes: ...

    def feed(self, body: bytes, mtime: float) -> tuple[bytes, int]:
        """The feed's body and its ``Last-Modified`` (Unix seconds)."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Frozen:
    """The recorded bytes, exactly; a feed was last modified when its file was."""

    def markets(self, body: bytes) -> bytes:
        return body

    def tickers(self, body: bytes) -> bytes:
        return body

    def feed(self, body: bytes, mtime: float) -> tuple[bytes, int]:
        return body, int(mtime)

    def describe(self) -> str:
        return "frozen: the recorded bytes"


FROZEN = Frozen()


@dataclass(frozen=True)
class Live:
    """The fixtures moved to the current step of ``clock`` (see :mod:`cryptoetl.stub.live`)."""

    seed: int = DEFAULT_SEED
    step_s: int = DEFAULT_STEP_S
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.step_s < 1:
            raise ValueError(f"the live stub's step must be at least 1 s, got {self.step_s}")

    def moment(self) -> Moment:
        return Moment.at(self.clock(), self.step_s)

    def markets(self, body: bytes) -> bytes:
        return live_markets(body, self.seed, self.moment())

    def tickers(self, body: bytes) -> bytes:
        return live_tickers(body, self.seed, self.moment())

    def feed(self, body: bytes, mtime: float) -> tuple[bytes, int]:
        """The moved feed; it changed when its newest date did, or when its file did if later."""
        moved, newest = live_feed(body, self.moment())
        changed = int(mtime) if newest is None else max(int(mtime), int(newest.timestamp()))
        return moved, changed

    def describe(self) -> str:
        return f"live: seed {self.seed}, prices and timestamps move every {self.step_s} s"


def replay_mode(
    *,
    frozen: bool | None = None,
    seed: int | None = None,
    step_s: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> ReplayMode:
    """The mode asked for; what is not given comes from ``STUB_FROZEN``, ``STUB_SEED`` and
    ``STUB_STEP_S``, else the defaults (live, seed 0, 60 s). Raises ``ValueError`` naming a bad
    variable."""
    if frozen is None:
        frozen = _env_flag(environ, "STUB_FROZEN")
    if frozen:
        return FROZEN
    return Live(
        seed=_env_int(environ, "STUB_SEED", DEFAULT_SEED) if seed is None else seed,
        step_s=_env_int(environ, "STUB_STEP_S", DEFAULT_STEP_S) if step_s is None else step_s,
    )


def _env_flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value not in TRUE_WORDS | FALSE_WORDS:
        raise ValueError(f"{name} must be 1 or 0 (true/false, yes/no), got {value!r}")
    return value in TRUE_WORDS


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
