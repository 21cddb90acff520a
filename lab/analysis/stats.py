"""How sure a number is: each cell's 95% interval, and a verdict for every comparison the lab states.

The design. A run measures its repeats in rounds, each round over every cell in a new random order: the rounds are
the blocks of a randomized block design. A machine whose speed drifts during a run (the 2-core VMs here ran one
round much slower than the next) moves every cell of a round alike, so the lab fits that out: log RPS = cell + round,
by least squares over every repeat of a scenario (round_effects); each repeat is divided by its round's factor (the
factors' geometric mean is 1), and the fit's rounds - 1 degrees of freedom are taken from the noise's. Comparisons
between cells are then, in effect, made within rounds. With one round, or without drift, this changes nothing.

The CPU's speed. Within a round the same VMs switch between full speed and about 0.6 of it several times a second,
which no round can fit. The speedometer (lab/speedometer.py) samples the server CPU's speed during every window; each
repeat's share is its window's mean speed over its cell's full speed (a high quantile of the cell's samples, so a
server that slows the sampler a little does not read as a slow machine: lab/results.py: speed_shares). The fit then
is log RPS = cell + round + beta * log share, and each repeat is also divided by exp(beta * (log share - mean log
share)): every value is at the run's mean speed. beta is fitted, not assumed (a server may slow less than the
sampler), and costs one more degree of freedom. `unblocked_sd` and `unspeeded_sd` keep the noise without the rounds
and without the speed term, so the report can say what each bought.

The interval. A run has few repeats per cell (3 by default): three repeats cannot give a 95% interval on their own
(their widest order-statistic interval, min to max, holds the median only 75% of the time, and a bootstrap of three
values is no better). But the drift and the noise land on every cell alike, so the lab estimates the noise once per
run and scenario, pooled over every cell: the standard deviation of the round-adjusted log RPS around each cell's own
mean, with sum(n_i - 1) - (rounds - 1) degrees of freedom. A cell's 95% interval is exp(mean +- t * s / sqrt(n))
(Student's t at the pooled degrees of freedom), at the run's mean machine speed; the figure shown beside it is the
median of the same adjusted repeats (lab/results.py: Point.level), and summary.csv keeps the median as measured too.

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
    """The run's repeat noise for one scenario: pooled standard deviation of adjusted log RPS, its degrees of freedom,
    and what was fitted out: each round's factor (round number -> factor; empty when not fitted) and the speed term
    (the exponent of a repeat's CPU speed share, None when not fitted, with the cells' shares by round)."""

    sd: float
    df: int
    factors: Mapping[int, float] = field(default_factory=dict, compare=False, hash=False)
    unblocked_sd: float = math.nan  # before anything is fitted out: what one lone run carries
    beta: float | None = None  # log RPS rises by beta per unit of log speed share (lab/speedometer.py)
    centre: float = 0.0  # the mean log speed share of the fitted repeats: adjusted values are at this speed
    shares: Mapping[str, Mapping[int, float]] = field(default_factory=dict, compare=False, hash=False)
    unspeeded_sd: float = math.nan  # with the rounds fitted out but not the speed: what the speed term bought

    def speed_factor(self, share: float | None) -> float:
        """A repeat's factor from its CPU speed share (1 at the run's mean speed, or without a speed term)."""
        if self.beta is None or share is None or share <= 0:
            return 1.0
        return math.exp(self.beta * (math.log(share) - self.centre))

    def factor(self, key: str, number: int) -> float:
        """What the fit says moved one repeat (cell `key`, round `number`) away from the cell's own level."""
        return self.factors.get(number, 1.0) * self.speed_factor(self.shares.get(key, {}).get(number))

    def adjusted(self, key: str, by_round: Mapping[int, float]) -> list[float]:
        """One cell's repeats (round -> RPS) with their round's factor and their speed's factor divided out."""
        return [rps / self.factor(key, number) for number, rps in sorted(by_round.items())]

    @property
    def t(self) -> float:
        from scipy import stats as scipy_stats  # imported when needed: it takes most of a second

        return float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, self.df)) if self.df > 0 else math.inf

    @property
    def percent(self) -> float:
        """The noise as a percentage of RPS (one standard deviation of one repeat)."""
        return 100 * (math.exp(self.sd) - 1)


def pooled_noise(samples: Iterable[Sequence[float]], fitted: int = 0) -> Noise:
    """Pooled standard deviation of log values around each sample's own mean; `fitted` degrees of freedom already
    spent on the values (the round factors and the speed term divided out of them)."""
    squares, df = 0.0, -fitted
    for values in samples:
        logs = [math.log(v) for v in values if v > 0]
        if len(logs) >= 2:
            mean = statistics.fmean(logs)
            squares += sum((x - mean) ** 2 for x in logs)
            df += len(logs) - 1
    return Noise(math.sqrt(squares / df) if df > 0 else math.inf, max(df, 0))


@dataclass(frozen=True)
class Fit:
    """The least-squares fit of log RPS = cell + round [+ beta * log speed share] over a scenario's repeats."""

    rounds: dict[int, float]  # round -> factor, geometric mean 1; empty when not fitted
    beta: float | None = None  # None when the speed term was not fitted
    centre: float = 0.0  # the mean log share of the repeats


def fit(cells: Mapping[str, Mapping[int, float]], shares: Mapping[str, Mapping[int, float]] | None = None) -> Fit:
    """Rounds and, when every repeat has a CPU speed share (cell -> round -> share), the speed term, fitted together
    (cell -> round -> RPS). No round factors with fewer than two rounds, or when the rounds share no cell (nothing ties
    them together); no speed term when a repeat lacks a share, when the shares do not vary, or when the fit finds RPS
    falling as the CPU runs faster (beta <= 0: no sign of the CPU's speed in the RPS)."""
    import numpy as np

    found = [(key, number, rps) for key, by_round in cells.items() for number, rps in by_round.items() if rps > 0]
    keys = sorted({key for key, _, _ in found})
    rounds = sorted({number for _, number, _ in found})
    speeds = [(shares or {}).get(key, {}).get(number, 0.0) for key, number, _ in found]
    with_speed = bool(found) and all(share > 0 for share in speeds)
    logs = np.array([math.log(rps) for _, _, rps in found])
    for speed in (with_speed, False):
        columns = len(keys) + max(len(rounds) - 1, 0) + (1 if speed else 0)
        design = np.zeros((len(found), columns))
        for row, (key, number, _) in enumerate(found):
            design[row, keys.index(key)] = 1.0
            if len(rounds) >= 2 and rounds.index(number):
                design[row, len(keys) + rounds.index(number) - 1] = 1.0
            if speed:
                design[row, -1] = math.log(speeds[row])
        if not found or np.linalg.matrix_rank(design) < columns:
            continue
        solved = np.linalg.lstsq(design, logs, rcond=None)[0]
        beta = float(solved[-1]) if speed else None
        if beta is not None and not (math.isfinite(beta) and beta > 0):
            continue
        effects = [0.0, *solved[len(keys) : len(keys) + len(rounds) - 1]] if len(rounds) >= 2 else []
        middle = statistics.fmean(effects) if effects else 0.0
        factors = {number: math.exp(e - middle) for number, e in zip(rounds, effects, strict=False)}
        centre = statistics.fmean(math.log(x) for x in speeds) if speed else 0.0
        return Fit(factors, beta, centre)
    return Fit({})


def round_effects(cells: Mapping[str, Mapping[int, float]]) -> dict[int, float]:
    """Each round's factor on every cell's RPS (round -> factor, geometric mean 1), without the speed term."""
    return fit(cells).rounds


def blocked_noise(
    cells: Mapping[str, Mapping[int, float]], shares: Mapping[str, Mapping[int, float]] | None = None
) -> Noise:
    """The run's noise for one scenario (cell -> round -> RPS) with the rounds' drift and, given each repeat's CPU
    speed share (cell -> round -> share), the CPU's speed fitted out."""
    found = fit(cells, shares)
    bare = Noise(0.0, 0, found.rounds, beta=found.beta, centre=found.centre, shares=dict(shares or {}))
    fitted = max(len(found.rounds) - 1, 0) + (1 if found.beta is not None else 0)
    pooled = pooled_noise((bare.adjusted(key, by_round) for key, by_round in cells.items()), fitted)
    unblocked = pooled_noise(list(by_round.values()) for by_round in cells.values()).sd
    unspeeded = blocked_noise(cells).sd if found.beta is not None else pooled.sd
    return replace(bare, sd=pooled.sd, df=pooled.df, unblocked_sd=unblocked, unspeeded_sd=unspeeded)


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
    """What two cells differ in, when it is one thing the lab compares (http goes with the server and the loop when
    either changes too; alone, it is compared as itself);
    cells of two variants are compared only with each other (paired: ab)."""
    if a.get("variant", "") != b.get("variant", ""):
        return None
    differ = [axis for axis in ROLES if a.get(axis) != b.get(axis)]
    if not differ and a.get("http") != b.get("http"):
        return "http"  # the HTTP implementation alone: HTTP/1.1 vs HTTP/2 on one server, or h11 vs httptools
    return differ[0] if len(differ) == 1 else None


def comparisons(
    scenario: str, cells: dict[str, dict[str, object]], rps: Mapping[str, Mapping[int, float]], noise: Noise
) -> list[Comparison]:
    """Every comparison the lab states between these cells (key -> axes; key -> round -> RPS of its ok repeats),
    adjusted by the noise's fit (rounds, speed), faster or first-listed cell as A."""
    found = []
    for a, b in combinations(list(cells), 2):
        kind = role(cells[a], cells[b])
        if kind is None or not rps.get(a) or not rps.get(b):
            continue
        found.append(compare(scenario, kind, a, b, noise.adjusted(a, rps[a]), noise.adjusted(b, rps[b]), noise))
    return found


def undecided(found: Iterable[Comparison]) -> set[str]:
    """Cells in a comparison that is not yet significant: they get more repeats while the budget allows."""
    return {key for c in found if not c.significant for key in (c.a, c.b)}


def ranks(
    values: Mapping[str, Sequence[float]], noise: Noise, decided: Mapping[frozenset[str], str | None] | None = None
) -> dict[str, int]:
    """Ranks from the pairwise verdicts (cell -> its adjusted RPS): every two cells compared at the run's noise, and
    a cell's rank is 1 + the number of cells significantly faster than it (95%). Cells the lab cannot tell apart
    share a rank, and the ranks can skip (1, 1, 3); with the noise unknown every cell ranks 1. `decided`: pairs whose
    verdict a better measurement gave (an A/B run's side-by-side rounds): the faster cell, or None for neither."""
    faster: dict[str, int] = dict.fromkeys(values, 0)
    for a, b in combinations([k for k, v in values.items() if v], 2):
        pair = frozenset((a, b))
        if decided is not None and pair in decided:
            winner = decided[pair]
        else:
            winner = compare("", "rank", a, b, values[a], values[b], noise).faster
        if winner is not None:
            faster[b if winner == a else a] += 1
    return {key: 1 + n for key, n in faster.items()}


@dataclass(frozen=True)
class Paired:
    """B against A on one cell and scenario, from the rounds that measured both: the ratio B ÷ A of their RPS with
    its 95% interval, at the noise of the paired differences pooled over the pairs of its group."""

    scenario: str
    a: str
    b: str
    group: str  # whose paired differences gave the noise (the cells' server)
    ratio: float  # B ÷ A
    low: float
    high: float
    rounds: int  # pairs measured
    sd: float  # of one round's log(B ÷ A), pooled over the group
    df: int
    side_by_side: bool = False  # from pair rounds (lab/pairs.py), not from the throughput rounds' visits

    @property
    def significant(self) -> bool:
        return self.low > 1 or self.high < 1

    @property
    def half_pct(self) -> float:
        """The interval's half-width, in % of A."""
        return 100 * (math.sqrt(self.high / self.low) - 1) if self.low > 0 else math.inf

    def slower_than(self, pct: float) -> bool:
        """B is slower than A by more than pct% with 95% confidence."""
        return self.high < 1 - pct / 100


def ab(
    scenario: str, pairs: Mapping[str, tuple[str, str]], by_round: Mapping[str, Mapping[int, float]],
    group_of: Mapping[str, str],
) -> list[Paired]:  # fmt: skip
    """Each A/B pair (name -> (A's key, B's key); key -> round -> RPS adjusted for the CPU's speed) compared on the
    rounds that measured both: one round's log(B ÷ A) is a paired difference, its mean over the rounds the pair's
    log ratio. The difference removes whatever moved the whole round (the rounds' drift). Its noise is pooled over the
    pairs of the same group (server), not over the run: the noisiest servers' pairs get their own, wider, noise, so
    the false-positive rate holds on them too (an A/A run on hypercorn would otherwise read the calmer granian's)."""
    diffs: dict[str, list[float]] = {}
    for name, (a, b) in pairs.items():
        common = sorted(set(by_round.get(a, {})) & set(by_round.get(b, {})))
        diffs[name] = [math.log(by_round[b][r] / by_round[a][r]) for r in common if by_round[a][r] > 0 < by_round[b][r]]
    pooled: dict[str, Noise] = {}
    for group in set(group_of.values()):
        pooled[group] = pooled_noise([math.exp(d) for d in diffs[n]] for n in diffs if group_of[n] == group)
    found = []
    for name, ds in diffs.items():
        if not ds:
            continue
        noise = pooled[group_of[name]]
        mean = statistics.fmean(ds)
        half = noise.t * noise.sd / math.sqrt(len(ds)) if math.isfinite(noise.sd) else math.inf
        low, high = math.exp(mean - half), math.exp(min(mean + half, 700.0))
        a, b = pairs[name]
        found.append(Paired(scenario, a, b, group_of[name], math.exp(mean), low, high, len(ds), noise.sd, noise.df))
    return found


def side_by_side(scenario: str, a: str, b: str, logs: Sequence[float]) -> Paired:
    """B against A from pair rounds (lab/pairs.py): each round's log(B ÷ A), measured on both at once and each round
    on fresh servers, is one independent estimate; the interval is Student's t over the rounds, with this pair's own
    noise (rounds - 1 degrees of freedom). Its noise is the starts' as much as the machine's: a server's start runs at
    a speed of its own, and only other starts can show how much, so it is never pooled with other cells'."""
    n = len(logs)
    mean = statistics.fmean(logs) if logs else 0.0
    sd = statistics.stdev(logs) if n >= 2 else math.inf
    noise = Noise(sd, n - 1)
    half = noise.t * sd / math.sqrt(n) if n >= 2 and math.isfinite(sd) else math.inf
    low, high = math.exp(mean - half), math.exp(min(mean + half, 700.0))
    return Paired(scenario, a, b, "its own rounds", math.exp(mean), low, high, n, sd, max(n - 1, 0), True)
