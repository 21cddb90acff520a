"""What the run may still afford (lab/run/budget.py has the time arithmetic): measuring a disturbed throughput repeat
again, and an extra round for the cells whose comparisons are undecided, each only while the rest of the run — its
rounds, its first referee runs, its sweep and its stops — would still end within the budget."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from lab.analysis import stats
from lab.analysis.points import speed_shares
from lab.bundle import SweepRates
from lab.config import RunConfig
from lab.lifecycle.stops import SECONDS_PER_STOP, stop_cells
from lab.run.budget import Budget
from lab.run.ledger import Ledger
from lab.run.progress import Listener
from lab.run.referee_rule import RefereeRule
from lab.run.sweep import Sweeper
from servers.matrix import Cell, Matrix


@dataclass
class Allowance:
    budget: Budget
    config: RunConfig
    matrix: Matrix
    ledger: Ledger
    dead: Set[str]  # the cells that failed in this session
    rule: RefereeRule
    sweeper: Sweeper
    listener: Listener
    left: int = 0  # throughput repeats still to measure

    def measured(self) -> None:
        self.left -= 1

    def passed(self, repeats: int) -> None:
        self.left -= repeats

    def may_rerun(self, took: float) -> bool:
        """Whether a disturbed repeat that took `took` seconds may be measured again."""
        c = self.config
        firsts_left = sum(
            1 for cell in c.cells for s in c.scenarios_of(cell, self.matrix) if not self.rule.has_first(cell.key, s)
        )
        assert self.ledger.manifest is not None
        chosen = self.ledger.manifest.sweep
        sweep = self.sweep_estimate(chosen) if chosen else self.sweep_guess()
        rest = self.budget.rest(max(self.left - 1, 0), firsts_left, sweep) + self.stops_estimate()
        return self.budget.may_rerun(took, rest)

    def extra_round_fits(self, rates: dict[str, SweepRates]) -> bool:
        """More repeats while comparisons are undecided, up to max_repeats, while the round and the sweep fit."""
        undecided = self.undecided()
        assert self.ledger.manifest is not None
        if not undecided or len(self.ledger.manifest.rounds) >= self.config.max_repeats:
            return False
        visit = self.budget.per_visit(self.listener.per_repeat, len(self.config.scenarios))
        return self.budget.fits_round(visit * len(undecided), self.sweep_estimate(rates) + self.stops_estimate())

    def stops_estimate(self) -> float:
        """Seconds the stop phase will take: kept free of extra rounds, as the sweep's are."""
        return SECONDS_PER_STOP * self.config.stops * len(stop_cells(self.config.cells, self.matrix, self.dead))

    def sweep_estimate(self, rates: dict[str, SweepRates]) -> float:
        runs = sum(len(v.work) for v in self.sweeper.visits(rates) if v.cell.key not in self.dead)
        return self.budget.sweep_estimate(runs, len(self.config.cells))

    def sweep_guess(self) -> float:
        live = [cell for cell in self.config.cells if cell.key not in self.dead]
        swept = self.config.sweep_scenarios
        points = sum(len([s for s in self.config.scenarios_of(cell, self.matrix) if s in swept]) for cell in live)
        return self.budget.sweep_guess(points, len(live))

    def undecided(self) -> list[Cell]:
        """The live cells in a comparison that is not yet significant: they get more repeats while time allows."""
        c, found = self.config, set()
        cells = {cell.key: cell.model_dump() for cell in c.cells}
        for scenario in c.scenarios:
            repeats = {cell.key: self.ledger.ok(cell, scenario) for cell in c.cells}
            rps = {k: {r.repeat: r.load.rps for r in rs if r.load} for k, rs in repeats.items()}
            noise = stats.blocked_noise(rps, {k: speed_shares(rs) for k, rs in repeats.items()})
            found |= stats.undecided(stats.comparisons(scenario, cells, rps, noise))
        return sorted((cell for cell in c.cells if cell.key in found - self.dead), key=lambda cell: cell.key)
