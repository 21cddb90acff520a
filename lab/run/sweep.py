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
import statistics
from collections.abc import Set
from dataclasses import dataclass, field

from lab.bundle import SweepRates
from lab.config import RunConfig
from lab.run import plan
from lab.run.ledger import Ledger
from servers.matrix import Matrix

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


@dataclass
class Sweeper:
    """The run's sweep: its rates, chosen once from the throughput phase's figures (or --rate) and kept in the
    manifest, and the visits that run them."""

    config: RunConfig
    matrix: Matrix
    ledger: Ledger
    dead: Set[str]  # the cells that failed in this session
    capacity: dict[str, dict[str, float]] = field(default_factory=dict)  # scenario -> cell key -> capacity

    def capacities(self, scenario: str) -> dict[str, float]:
        """Each live cell's capacity in the scenario: its median RPS, or its referee's when that is higher."""
        found = {}
        for cell in self.config.cells:
            rps = [r.load.rps for r in self.ledger.ok(cell, scenario) if r.load]
            if rps and cell.key not in self.dead:
                carrier = self.ledger.referee_carrier(cell, scenario)
                wrk = carrier.referee.rps if carrier and carrier.referee else 0.0
                found[cell.key] = max(statistics.median(rps), wrk)
        return found

    def rates(self) -> dict[str, SweepRates]:
        """The sweep's rates per scenario (the manifest's when a resumed run chose them before)."""
        c = self.config
        self.capacity = {s: self.capacities(s) for s in c.scenarios}  # which cells run the fast-only rates
        assert self.ledger.manifest is not None
        chosen = dict(self.ledger.manifest.sweep)
        if not chosen:
            for scenario in c.sweep_scenarios:
                if c.rates:
                    chosen[scenario] = SweepRates(common=sorted(c.rates), fast=[], chosen_from="--rate")
                elif (found := rates(self.capacity[scenario]))[0]:
                    chosen[scenario] = SweepRates(
                        common=found[0], fast=found[1], chosen_from="the run's throughput figures"
                    )
        self.ledger.save(sweep=chosen)
        return chosen

    def visits(self, chosen: dict[str, SweepRates]) -> list[plan.Visit]:
        mine = {s: plan.Rates(r.common, r.fast) for s, r in chosen.items()}
        reach = {
            cell.key: {
                (s, rate): serves(self.capacity.get(s, {}).get(cell.key, 0.0), rate)
                for s, r in chosen.items()
                for rate in r.fast
            }
            for cell in self.config.cells
        }
        return plan.sweep_visits(self.config, self.matrix, self.ledger.run_id, mine, reach)
