"""How sure a number is: each cell's 95% interval, and a verdict for every comparison the lab states.

The design. A run measures its repeats in rounds, each round over every cell in a new random order: the rounds are
the blocks of a randomized block design. A machine whose speed drifts during a run (the 2-core VMs here ran one
round 20% slower than the next) moves every cell of a round alike, so the lab fits that out: log RPS = cell + round,
by least squares over every repeat of a scenario (round_effects); each repeat is divided by its round's factor (the
factors' geometric mean is 1), and the fit's rounds - 1 degrees of freedom are taken from the noise's. Comparisons
between cells are then, in effect, made within rounds. With one round, or without drift, this changes nothing.

The interval. A run has few repeats per cell (3 by default): three repeats cannot give a 95% interval on their own
(their widest order-statistic interval, min to max, holds the median only 75% of the time, and a bootstrap of three
values is no better). But the drift and the noise land on every cell alike, so the lab estimates the noise once per
run and scenario, pooled over every cell: the standard deviation of the round-adjusted log RPS around each cell's own
mean, with sum(n_i - 1) - (rounds - 1) degrees of freedom. A cell's 95% interval is exp(mean +- t * s / sqrt(n))
(Student's t at the pooled degrees of freedom), at the run's mean machine speed; the figure shown is still the median
of the repeats as measured.

A comparison of two cells (A vs B, same scenario) is the ratio of their round-adjusted geometric means with the
interval exp(diff +- t * s * sqrt(1/nA + 1/nB)). When the interval excludes 1 the lab says "A faster than B by X%
(95% CI lo-hi%)"; otherwise "indistinguishable at this noise". The comparisons stated are those between cells that
differ in one thing: the server (same app and loop), the app (same stack), the event loop (same server and app), or
the server's workers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations

CONFIDENCE = 0.95
ROLES = ("server", "app", "loop", "workers")


@dataclass(frozen=True)
class Noise:
    """The run's repeat noise for one scenario: pooled standard deviation of round-adjusted log RPS, its degrees of
    freedom, and each round's factor (round number -> factor; empty when not fitted)."""

    sd: float
    df: int
    factors: Mapping[int, float] = field(default_factory=dict, compare=False, hash=False)
    unblocked_sd: float = math.nan  # the same before the rounds' drift is fitted out: what one lone run carries

    def adjusted(self, by_round: Mapping[int, float]) -> list[float]:
        """One cell's repeats (round -> RPS) with each round's factor divided out."""
        return [rps / self.factors.get(number, 1.0) for number, rps in sorted(by_round.items())]

    @property
    def t(self) -> float:
        from scipy import stats as scipy_stats  # imported when needed: it takes most of a second

        return float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, self.df)) if self.df > 0 else math.inf

    @property
    def percent(self) -> float:
        """The noise as a percentage of RPS (one standard deviation of one repeat)."""
        return 100 * (math.exp(self.sd) - 1)


def pooled_noise(
    samples: Iterable[Sequence[float]], fitted: int = 0, factors: Mapping[int, float] | None = None
) -> Noise:
    """Pooled standard deviation of log values around each sample's own mean; `fitted` degrees of freedom already
    spent on the values (the round factors divided out of them)."""
    squares, df = 0.0, -fitted
    for values in samples:
        logs = [math.log(v) for v in values if v > 0]
        if len(logs) >= 2:
            mean = statistics.fmean(logs)
            squares += sum((x - mean) ** 2 for x in logs)
            df += len(logs) - 1
    return Noise(math.sqrt(squares / df) if df > 0 else math.inf, max(df, 0), dict(factors or {}))


def round_effects(cells: Mapping[str, Mapping[int, float]]) -> dict[int, float]:
    """Each round's factor on every cell's RPS (round -> factor, geometric mean 1): the least-squares fit of
    log RPS = cell + round over every repeat (cell -> round -> RPS). Empty with fewer than two rounds, or when the
    rounds share no cell (nothing ties them together)."""
    import numpy as np

    rounds = sorted({number for by_round in cells.values() for number, rps in by_round.items() if rps > 0})
    keys = [key for key, by_round in cells.items() if any(rps > 0 for rps in by_round.values())]
    if len(rounds) < 2:
        return {}
    rows, logs = [], []
    for i, key in enumerate(keys):
        for number, rps in cells[key].items():
            if rps > 0:
                row = np.zeros(len(keys) + len(rounds) - 1)
                row[i] = 1.0
                if rounds.index(number):
                    row[len(keys) + rounds.index(number) - 1] = 1.0
                rows.append(row)
                logs.append(math.log(rps))
    design = np.array(rows)
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return {}
    fit = np.linalg.lstsq(design, np.array(logs), rcond=None)[0]
    effects = [0.0, *fit[len(keys) :]]
    centre = statistics.fmean(effects)
    return {number: math.exp(effect - centre) for number, effect in zip(rounds, effects, strict=True)}


def blocked_noise(cells: Mapping[str, Mapping[int, float]]) -> Noise:
    """The run's noise for one scenario with the rounds' drift fitted out (cell -> round -> RPS)."""
    factors = round_effects(cells)
    bare = Noise(0.0, 0, factors)
    found = pooled_noise((bare.adjusted(by_round) for by_round in cells.values()), max(len(factors) - 1, 0), factors)
    return replace(found, unblocked_sd=pooled_noise(list(by_round.values()) for by_round in cells.values()).sd)


def interval(values: Sequence[float], noise: Noise) -> tuple[float, float]:
    """The 95% interval of a cell's RPS, from its repeats and the run's pooled noise."""
    logs = [math.log(v) for v in values if v > 0]
    if not logs or not math.isfinite(noise.sd):
        return (min(values, default=0.0), max(values, default=0.0))
    mean, half = statistics.fmean(logs), noise.t * noise.sd / math.sqrt(len(logs))
    return math.exp(mean - half), math.exp(mean + half)


@dataclass(frozen=True)
class Comparison:
    """A vs B in one scenario: the ratio of A's RPS to B's with its 95% interval, and what the lab says."""

    scenario: str
    role: str  # what differs: server, app, loop or workers
    a: str
    b: str
    ratio: float
    low: float
    high: float
    significant: bool

    @property
    def faster(self) -> str | None:
        """The cell that is faster with 95% confidence, or None."""
        if not self.significant:
            return None
        return self.a if self.ratio > 1 else self.b

    def text(self) -> str:
        """The faster cell first: "A faster than B by 23% (95% CI 13% to 34%)", "A 6.9x as fast as B (95% CI
        6.1x to 7.9x)" past 2x, or "A vs B: indistinguishable at this noise (95% CI -8% to +5%)"."""
        if not self.significant:
            ci = f"95% CI {100 * (self.low - 1):+.0f}% to {100 * (self.high - 1):+.0f}%"
            return f"{self.a} vs {self.b}: indistinguishable at this noise ({ci})"
        fast, slow, ratio, low, high = self.a, self.b, self.ratio, self.low, self.high
        if ratio < 1:
            fast, slow, ratio, low, high = self.b, self.a, 1 / ratio, 1 / self.high, 1 / self.low
        if ratio >= 2:
            return f"{fast} {ratio:.1f}x as fast as {slow} (95% CI {low:.1f}x to {high:.1f}x)"
        ci = f"95% CI {100 * (low - 1):.0f}% to {100 * (high - 1):.0f}%"
        return f"{fast} faster than {slow} by {100 * (ratio - 1):.0f}% ({ci})"


def compare(
    scenario: str, role: str, a: str, b: str, rps_a: Sequence[float], rps_b: Sequence[float], noise: Noise
) -> Comparison:
    la, lb = [math.log(v) for v in rps_a if v > 0], [math.log(v) for v in rps_b if v > 0]
    diff = statistics.fmean(la) - statistics.fmean(lb)
    half = noise.t * noise.sd * math.sqrt(1 / len(la) + 1 / len(lb))  # inf while the noise is unknown
    low, high = math.exp(diff - half), math.exp(min(diff + half, 700.0))
    return Comparison(scenario, role, a, b, math.exp(diff), low, high, low > 1 or high < 1)


def role(a: dict[str, object], b: dict[str, object]) -> str | None:
    """What two cells differ in, when it is one thing the lab compares (http goes with the server and the loop)."""
    differ = [axis for axis in ROLES if a[axis] != b[axis]]
    return differ[0] if len(differ) == 1 else None


def comparisons(
    scenario: str, cells: dict[str, dict[str, object]], rps: Mapping[str, Mapping[int, float]], noise: Noise
) -> list[Comparison]:
    """Every comparison the lab states between these cells (key -> axes; key -> round -> RPS of its ok repeats),
    round-adjusted with the noise's factors, faster or first-listed cell as A."""
    found = []
    for a, b in combinations(list(cells), 2):
        kind = role(cells[a], cells[b])
        if kind is None or not rps.get(a) or not rps.get(b):
            continue
        found.append(compare(scenario, kind, a, b, noise.adjusted(rps[a]), noise.adjusted(rps[b]), noise))
    return found


def undecided(found: Iterable[Comparison]) -> set[str]:
    """Cells in a comparison that is not yet significant: they get more repeats while the budget allows."""
    return {key for c in found if not c.significant for key in (c.a, c.b)}
