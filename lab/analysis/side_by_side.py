"""Side-by-side windows as the analysis reads them: a group's cells loaded together on the server CPUs
(lab/measure/group.py; an A/B run's pair rounds of bundles before groups, lab/bundle.py: PairWindow, read the same
way), and the ratios between every two cells measured together, over the rounds.

In one window the cells share the server CPUs and each answers in proportion to how little CPU an answer costs it:
the window's ratio of two cells' correct answers per second is the ratio of their throughputs at saturation, measured
in the same seconds on the same CPUs, so the machine's changes of speed fall on both alike. Each round starts every
server afresh (one start of a server runs at a speed of its own), so the rounds are independent estimates, and a
ratio's interval is Student's t over them, with its own pair's noise (lab/analysis/stats.py: side_by_side). A window
whose server CPUs were not saturated (the client, short of CPU, set the pace) reads the client's order of service as
much as the servers' costs: it is measured again (lab/run/group_rounds.py), and one that stays so is counted and
its cells' ratios are flagged, never ranked on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from lab.analysis import stats
from lab.bundle import GroupWindow, PairWindow, ServerFigures
from lab.measure.group import Shares, turn

SATURATED = 0.9  # the server CPUs busy at least this share of the window: the servers, not the client, set the pace
BATCHES = 10  # a window's own interval: the mean log ratio of this many stretches of it (batch means)


def rates(group: Shares, buckets: range | None = None) -> tuple[float, ...]:
    """Each side's correct answers per counted second, over these buckets of the window (default: all)."""
    span = buckets if buckets is not None else range(len(group.sides[0].buckets))
    per_second = []
    for i, side in enumerate(group.sides):
        turns = [k for k in span if turn(group, i, k)]
        seconds = len(turns) * group.counted_seconds()
        per_second.append(sum(side.buckets[k] for k in turns) / seconds if seconds else 0.0)
    return tuple(per_second)


@dataclass(frozen=True)
class Shared:
    """One side-by-side window: its cells' keys in the load's order, each one's correct answers per counted second
    and its server's own CPU seconds per answer, and whether the server CPUs set the pace."""

    scenario: str
    round: int
    keys: tuple[str, ...]
    rates: tuple[float, ...]
    costs: tuple[float | None, ...]
    saturated: bool
    group: Shares

    def log_ratio(self, a: str, b: str) -> float | None:
        """log(b ÷ a) of the window's correct answers per counted second."""
        ra, rb = self.rates[self.keys.index(a)], self.rates[self.keys.index(b)]
        return math.log(rb / ra) if ra > 0 < rb else None

    def cost_log_ratio(self, a: str, b: str) -> float | None:
        """log(b ÷ a) of each server's own CPU per correct answer over the window."""
        ca, cb = self.costs[self.keys.index(a)], self.costs[self.keys.index(b)]
        return math.log(cb / ca) if ca and cb else None

    def within_sd(self, a: str, b: str) -> float | None:
        """The standard error of the window's own log(b ÷ a), from BATCHES stretches of it (batch means): how
        precisely one start of each server was measured, which says nothing of how the next start would run."""
        size = len(self.group.sides[0].buckets) // BATCHES
        if size < 2:
            return None
        size += -size % len(self.keys) if self.group.mode == "slices" else 0  # whole turns of every side
        i, j = self.keys.index(a), self.keys.index(b)
        logs = []
        for start in range(0, size * BATCHES, size):
            found = rates(self.group, range(start, min(start + size, len(self.group.sides[0].buckets))))
            if found[i] > 0 < found[j]:
                logs.append(math.log(found[j] / found[i]))
        return statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) >= 3 else None


def busiest(figures: Sequence[ServerFigures | None]) -> float:
    """The server CPUs' least busy share over the window (every server saw the same CPUs)."""
    first = next((f for f in figures if f is not None), None)
    return min(first.cpus_busy.values(), default=0.0) if first else 0.0


def shared(window: GroupWindow | PairWindow) -> Shared | None:
    """A window in the analysis' terms (None when it measured nothing)."""
    group = window.load.group if window.ok and window.load else None
    if group is None:
        return None
    if isinstance(window, PairWindow):
        keys = tuple(window.cell.model_copy(update={"variant": v}).key for v in window.variants)
        figures: list[ServerFigures | None] = [window.server_a, window.server_b]
    else:
        keys, figures = tuple(c.key for c in window.cells), list(window.servers or [None] * len(window.cells))
    costs = tuple(f.cpu_seconds / s.ok if f and s.ok else None for f, s in zip(figures, group.sides, strict=True))
    return Shared(window.scenario, window.round, keys, rates(group), costs, busiest(figures) >= SATURATED, group)


def again(window: GroupWindow | PairWindow) -> str | None:
    """Why a window should be measured again, if it should: its server CPUs were idle for part of it (the client was
    short of CPU, say, because a neighbour took the load CPUs). Steal and other work on the server CPUs are not a
    reason: they fall on every server alike, which is the point of measuring them side by side."""
    found = shared(window)
    if found is None or found.saturated:
        return None
    figures = window.servers if isinstance(window, GroupWindow) else [window.server_a, window.server_b]
    return f"the server CPUs {busiest(figures or []):.0%} busy, not saturated"


@dataclass(frozen=True)
class Ratio:
    """B against A, two cells measured side by side in one scenario, over the rounds: throughput B ÷ A and the
    servers' own CPU per answer B ÷ A, each with its 95% interval over the rounds; the windows whose server CPUs were
    not saturated; the median window's own half-width."""

    throughput: stats.Paired
    cost: stats.Paired | None
    unsaturated: int
    within_pct: float | None


def ratios(windows: Sequence[Shared]) -> dict[tuple[str, str, str], Ratio]:
    """(scenario, a, b) -> b against a, for every two cells measured together, a the one listed first in its
    windows; the rounds in order."""
    together: dict[tuple[str, str, str], list[Shared]] = {}
    for w in sorted(windows, key=lambda w: w.round):
        for a, b in combinations(w.keys, 2):
            together.setdefault((w.scenario, a, b), []).append(w)
    found = {}
    for (scenario, a, b), mine in together.items():
        logs = [x for w in mine if (x := w.log_ratio(a, b)) is not None]
        costs = [x for w in mine if (x := w.cost_log_ratio(a, b)) is not None]
        within = [x for w in mine if (x := w.within_sd(a, b)) is not None]
        found[(scenario, a, b)] = Ratio(
            stats.side_by_side(scenario, a, b, logs),
            stats.side_by_side(scenario, a, b, costs) if costs else None,
            sum(not w.saturated for w in mine),
            100 * (math.exp(1.96 * statistics.median(within)) - 1) if within else None,
        )
    return found
