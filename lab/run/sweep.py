"""The equal-load sweep's offered rates, chosen from the run's own throughput figures, the same for every cell.

Per scenario, with S the slowest cell's capacity and F the fastest's (capacity: the median of a cell's throughput
repeats, or its referee's figure when that is higher):
  common rates  LADDER x S, run on every cell: from a light load up to past the slowest cell's knee, so that every
                cell is compared at rates all of them serve, and the slowest ones' saturation is inside the sweep;
  fast rates    FAST x F, run only on the cells whose capacity is at least FAST_ROOM times the rate: the fast
                cells compared with each other where the slow ones cannot follow.
Rates are rounded to two significant figures, so that a reader can read them and two runs can share them.
"""

from __future__ import annotations

import math

LADDER = (0.1, 0.4, 0.8, 1.2)  # shares of the slowest cell's capacity
FAST = (0.4, 0.8)  # shares of the fastest cell's capacity
FAST_ROOM = 1.1  # a fast rate runs on a cell whose capacity is at least this many times the rate


def round2(value: float) -> float:
    """Two significant figures: 1234 -> 1200, 0.456 -> 0.46."""
    if value <= 0:
        return 0.0
    digits = 1 - math.floor(math.log10(value))
    return float(round(value, digits))


def rates(capacities: dict[str, float]) -> tuple[list[float], list[float]]:
    """(common rates, fast-only rates) for one scenario from its cells' capacities."""
    found = [c for c in capacities.values() if c > 0]
    if not found:
        return [], []
    slowest, fastest = min(found), max(found)
    common = sorted({round2(share * slowest) for share in LADDER} - {0.0})
    fast = sorted({round2(share * fastest) for share in FAST if share * fastest > max(LADDER) * slowest} - set(common))
    return common, fast


def serves(capacity: float, rate: float) -> bool:
    """Whether a fast-only rate is run on a cell of this capacity."""
    return capacity >= FAST_ROOM * rate
