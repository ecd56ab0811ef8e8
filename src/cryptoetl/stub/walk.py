"""The live stub's prices: a seeded, mean-reverting random walk per coin, one move per time step.

A coin's log price ``x`` (relative to its recorded price) follows the discrete
Ornstein-Uhlenbeck walk ``x[k] = reversion * x[k-1] + sigma * shock[k]``: every step moves it by
a fresh shock and pulls it back towards the recording, so prices wander like a market but never
drift off to zero or to the moon, however long the demo runs.

Each shock is a hash of (seed, coin, step), so the walk needs no state: any process, at any
time, computes the same price for the same seed and step, and tests can predict it. ``x[k]`` is
the sum of the last :data:`MEMORY_STEPS` shocks weighted by ``reversion ** age``; older shocks
would weigh less than ``0.98 ** 256``, 0.6 % of a fresh one, and the walk is defined without
them.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

MEMORY_STEPS = 256
# Shocks are uniform on [-sqrt(3), sqrt(3)]: variance 1, like a standard normal, from one hash.
_SHOCK_SCALE = math.sqrt(3.0)
_HASH_RANGE = float(1 << 64)


@dataclass(frozen=True)
class WalkParams:
    """How one kind of coin moves: per-step volatility of the log price and its pull back."""

    sigma: float
    reversion: float


# About 0.25 % per step (a visible move on a chart every minute); the pull back keeps the price
# within a few percent of the recording (stationary spread sigma / sqrt(1 - reversion**2), 1.3 %).
VOLATILE = WalkParams(sigma=0.0025, reversion=0.98)
# A stablecoin keeps its peg: a few hundredths of a cent per step, within 0.05 % or so.
PEGGED = WalkParams(sigma=0.0003, reversion=0.8)
# A coin recorded this close to $1 is taken for a stablecoin (USDT, USDC, DAI, ...).
PEG_TOLERANCE = 0.02


def params_for(recorded_price: float) -> WalkParams:
    return PEGGED if abs(recorded_price - 1.0) <= PEG_TOLERANCE else VOLATILE


def _shock(seed: int, coin: str, step: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{coin}:{step}".encode(), digest_size=8).digest()
    return (2.0 * int.from_bytes(digest, "big") / _HASH_RANGE - 1.0) * _SHOCK_SCALE


# Two requests of one step (and the trailing-change look-backs of the next) hit this cache.
@functools.lru_cache(maxsize=8192)
def log_offset(seed: int, coin: str, params: WalkParams, step: int) -> float:
    """``x[step]``: the coin's log price at ``step`` minus its recorded log price."""
    return params.sigma * math.fsum(
        params.reversion**age * _shock(seed, coin, step - age) for age in range(MEMORY_STEPS)
    )


def price_factor(seed: int, coin: str, params: WalkParams, step: int) -> float:
    """The coin's price at ``step`` divided by its recorded price (always positive)."""
    return math.exp(log_offset(seed, coin, params, step))
