"""The run's time budget: what a repeat has cost so far, and whether something optional still fits.

Two things are optional: measuring a disturbed throughput repeat again (lab/measure.py: conditions), and the extra
rounds for cells whose comparisons are undecided. With a budget, each is done only while the whole run, the rest
of its rounds, its referee runs and its sweep counted, would still end within it; without one, a run measures at
most RERUNS_PER_RUN repeats again and has no extra rounds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from lab.run import sweep
from lab.run.plan import SWEEP_WARMUP

RERUNS = 2  # times one disturbed repeat may be measured again
RERUNS_PER_RUN = 20  # without a budget: measured again at most this often in a run
VISIT_SECONDS = 0.5  # a repeat's share of its cell's visit: the server's start and stop, the speed probes
REFEREE_OVERHEAD = 1.0  # seconds of a wrk run beyond its duration
DEFAULT_OVERHEAD = 1.0  # a repeat's seconds beyond its warm-up and window, until one has been measured


@dataclass
class Budget:
    seconds: float  # the whole run's, from `started`; 0: no budget
    started: float  # when the run started (time.time(); a resumed run keeps its first start)
    repeat_seconds: float  # a throughput repeat's warm-up and window
    sweep_seconds: float  # one swept window
    referee_seconds: float
    overheads: list[float] = field(default_factory=list)  # each measured repeat's seconds beyond warm-up and window
    reruns: int = 0

    def spent(self, took: float, warmup: float, duration: float) -> None:
        """A repeat took `took` seconds."""
        self.overheads.append(took - warmup - duration)

    @property
    def overhead(self) -> float:
        """Seconds a repeat takes beyond its warm-up and window (Locust's start and stop, checks, sampling)."""
        return statistics.median(self.overheads) if self.overheads else DEFAULT_OVERHEAD

    def rest(self, repeats: int, referees: int, sweep: float) -> float:
        """Seconds the run still needs: `repeats` throughput repeats, `referees` first wrk runs, the sweep."""
        per_repeat = self.repeat_seconds + self.overhead + VISIT_SECONDS
        return repeats * per_repeat + referees * (self.referee_seconds + REFEREE_OVERHEAD) + sweep

    def may_rerun(self, took: float, rest: float) -> bool:
        """Whether a disturbed repeat that took `took` seconds may be measured again, `rest` seconds of the run
        still to come."""
        if not self.seconds:
            return self.reruns < RERUNS_PER_RUN
        return time.time() + took + rest <= self.started + self.seconds

    def sweep_estimate(self, runs: float, cells: int) -> float:
        """The sweep's seconds: its windows, each with the overhead measured so far, and a server start per cell."""
        if not self.sweep_seconds:
            return 0.0
        return runs * (self.sweep_seconds + self.overhead) + cells * (SWEEP_WARMUP + DEFAULT_OVERHEAD)

    def sweep_guess(self, points: int, cells: int) -> float:
        """The sweep's seconds before its rates are chosen: every common rate on every live point, and a quarter of
        the fast-only ones (they run on the fast cells only)."""
        return self.sweep_estimate(points * (len(sweep.LADDER) + len(sweep.FAST) / 4), cells)

    def fits_round(self, seconds: float, sweep: float) -> bool:
        """Whether one more extra round of `seconds` fits before the sweep's time, kept free."""
        return bool(self.seconds) and time.time() + seconds <= self.started + self.seconds - sweep

    def per_visit(self, per_repeat: float, scenarios: int) -> float:
        """One cell's visit in an extra round, from the seconds per repeat measured so far (0: none yet)."""
        return max(per_repeat, self.repeat_seconds + DEFAULT_OVERHEAD) * scenarios + 1.0
