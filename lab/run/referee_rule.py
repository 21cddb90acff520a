"""When wrk, the referee, runs on a point (a closed-model cell x scenario) while a run goes on.

Right after the point's first ok repeat, on the same warm server. One 2-s run carries the machine's speed in its
window (docs/instrument.md: the referee), so in each later round wrk runs again after that round's repeat while
Locust ÷ wrk so far lies outside REFEREE_SHARE-REFEREE_ABOVE, within AGAIN_SECONDS of such runs per run. The
point's ratio is then the median over wrk's runs (lab/verdict.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from lab.bundle import Repeat
from lab.measure.referee import Refereed
from lab.measure.speed import MIN_SPEED_SAMPLES
from lab.verdict import REFEREE_ABOVE, REFEREE_SHARE

AGAIN_SECONDS = 45.0  # of wrk in later rounds, per run, budget or not (early in a run the budget allows nothing)
OVERHEAD = 1.0  # seconds a wrk run takes beyond its duration
# RPS ∝ CPU speed^β, with β as the per-cell probes found it (0.70-0.93): only for this decision, before the run's own
# fit exists; every figure the analysis reports uses the fit (lab/stats.py).
BETA = 0.8


def rough_ratio(repeats: Iterable[Repeat]) -> float | None:
    """Locust ÷ wrk from a point's repeats so far: per wrk run, the repeat it followed over it, brought to wrk's CPU
    speed with BETA (as measured when either has too few speed samples); the median over wrk's runs."""
    ratios = []
    for r in repeats:
        if not (r.referee and r.referee.rps > 0 and r.load):
            continue
        ratio = r.load.rps / r.referee.rps
        c = r.conditions
        if c and min(len(c.speed_samples), len(c.referee_speed)) >= MIN_SPEED_SAMPLES:
            ratio *= (statistics.fmean(c.referee_speed) / statistics.fmean(c.speed_samples)) ** BETA
        ratios.append(ratio)
    return statistics.median(ratios) if ratios else None


@dataclass
class RefereeRule:
    seconds: float  # one wrk run; 0: no referee in this run
    spent: float = 0.0  # on wrk in later rounds so far
    firsts: dict[tuple[str, str], Refereed] = field(default_factory=dict)  # each point's first referee this session

    def first(self, key: str, scenario: str) -> Refereed | None:
        return self.firsts.get((key, scenario))

    def has_first(self, key: str, scenario: str) -> bool:
        return (key, scenario) in self.firsts

    def remember(self, key: str, scenario: str, referee: Refereed) -> None:
        self.firsts[(key, scenario)] = referee

    def again(self, repeats: list[Repeat]) -> bool:
        """Whether wrk runs again after this round's repeat of a point (`repeats`: its ok repeats of the rounds
        before): it ran before, Locust ÷ wrk so far is off, and the allowance has room for one more run."""
        if not self.seconds or self.spent + self.seconds + OVERHEAD > AGAIN_SECONDS:
            return False
        ratio = rough_ratio(repeats)  # None until wrk has run on the point
        return ratio is not None and not REFEREE_SHARE <= ratio <= REFEREE_ABOVE

    def ran_again(self) -> None:
        self.spent += self.seconds + OVERHEAD
