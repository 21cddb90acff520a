"""What the run may still afford (lab/run/budget.py has the time arithmetic): measuring a disturbed throughput repeat
again, and an extra side-by-side round for the groups whose comparisons are undecided, each only while the rest of
the run — its rounds, its first referee runs, its sweep and its stops — would still end within the budget."""

from __future__ import annotations

import statistics
from collections.abc import Set
from dataclasses import dataclass, field

from lab.analysis import stats
from lab.analysis.side_by_side import ratios, shared
from lab.bundle import SweepRates
from lab.config import RunConfig
from lab.lifecycle.stops import SECONDS_PER_STOP, stop_cells
from lab.run.budget import Budget
from lab.run.ledger import Ledger
from lab.run.progress import Listener
from lab.run.referee_rule import RefereeRule
from lab.run.sweep import Sweeper
from servers.matrix import Matrix


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
    group_seconds: dict[str, list[float]] = field(default_factory=dict)  # each group visit's seconds so far

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
        """One more side-by-side round for the undecided groups, while the run has fewer than max_repeats of them and
        the round, the sweep and the stops fit."""
        undecided = self.undecided()
        assert self.ledger.manifest is not None
        done = self.config.pair_rounds + len(self.ledger.manifest.extra_rounds)
        if not undecided or done >= self.config.max_repeats:
            return False
        seconds = sum(statistics.median(self.group_seconds.get(k) or [60.0]) for k in undecided)
        return self.budget.fits_round(seconds, self.sweep_estimate(rates) + self.stops_estimate())

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

    def undecided(self) -> list[str]:
        """The groups with a comparison measured side by side that is not yet significant: they get more rounds while
        time allows."""
        windows = [w for g in self.ledger.groups.values() if (w := shared(g)) is not None]
        cells = {c.key: c.model_dump() for c in self.config.cells}
        open_ = {k for (_, a, b), r in ratios(windows).items() if stats.role(cells.get(a, {}), cells.get(b, {}))
                 and not r.throughput.significant for k in (a, b)}  # fmt: skip
        return [key for key, group in self.config.groups().items()
                if any(c.key in open_ for c in group) and not any(c.key in self.dead for c in group)]  # fmt: skip
