"""How sure a comparison is: the ratio of two cells measured side by side over independent rounds, with its 95%
interval, and the ranks those verdicts give (docs/method.md has the design and what it was measured against)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple

CONFIDENCE = 0.95
ROLES = ("server", "app", "loop", "workers")


class Interval(NamedTuple):
    """A 95% interval (or, where said, the range of what was measured)."""

    low: float
    high: float


@dataclass(frozen=True)
class Noise:
    """The noise of log values: one standard deviation and its degrees of freedom."""

    sd: float
    df: int

    @property
    def t(self) -> float:
        from scipy import stats as scipy_stats  # imported when needed: it takes most of a second

        return float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, self.df)) if self.df > 0 else math.inf

    @property
    def known(self) -> bool:
        return self.df > 0 and math.isfinite(self.sd)


def pooled_noise(samples: Iterable[Sequence[float]]) -> Noise:
    """Pooled standard deviation of log values around each sample's own mean."""
    squares, df = 0.0, 0
    for values in samples:
        logs = [math.log(v) for v in values if v > 0]
        if len(logs) >= 2:
            mean = statistics.fmean(logs)
            squares += sum((x - mean) ** 2 for x in logs)
            df += len(logs) - 1
    return Noise(math.sqrt(squares / df) if df > 0 else math.inf, df)


@dataclass(frozen=True)
class Paired:
    """B against A, from rounds that measured both side by side: the ratio B ÷ A with its 95% interval over the
    rounds, each round one independent estimate (fresh starts of both)."""

    scenario: str
    a: str
    b: str
    ratio: float  # B ÷ A
    low: float
    high: float
    rounds: int
    sd: float  # of one round's log(B ÷ A)
    df: int

    @property
    def significant(self) -> bool:
        return self.low > 1 or self.high < 1

    @property
    def measurable(self) -> bool:
        """Whether there is an interval at all (two rounds or more)."""
        return self.df > 0 and math.isfinite(self.sd)

    @property
    def faster(self) -> str | None:
        """The cell that is faster with 95% confidence, or None."""
        if not self.significant:
            return None
        return self.b if self.ratio > 1 else self.a

    @property
    def half_pct(self) -> float:
        """The interval's half-width, in % of A."""
        return 100 * (math.sqrt(self.high / self.low) - 1) if self.low > 0 else math.inf

    def slower_than(self, pct: float) -> bool:
        """B is slower than A by more than pct% with 95% confidence."""
        return self.high < 1 - pct / 100

    def turned(self) -> Paired:
        """A against B: the same measurement the other way round."""

        def inverse(x: float) -> float:
            return 1 / x if x > 0 else math.inf

        return Paired(self.scenario, self.b, self.a, inverse(self.ratio), inverse(self.high), inverse(self.low),
                      self.rounds, self.sd, self.df)  # fmt: skip

    def covers(self, ratio: float) -> bool:
        return self.low <= ratio <= self.high


def side_by_side(scenario: str, a: str, b: str, logs: Sequence[float]) -> Paired:
    """B against A from side-by-side rounds (lab/analysis/side_by_side.py): each round's log(B ÷ A), measured on both
    at once and each round on fresh servers, is one independent estimate; the interval is Student's t over the
    rounds, with this pair's own noise (rounds - 1 degrees of freedom). Its noise is the starts' as much as the
    machine's: a server's start runs at a speed of its own, and only other starts can show how much, so it is never
    pooled with other cells'."""
    n = len(logs)
    mean = statistics.fmean(logs) if logs else 0.0
    sd = statistics.stdev(logs) if n >= 2 else math.inf
    noise = Noise(sd, n - 1)
    half = noise.t * sd / math.sqrt(n) if n >= 2 and math.isfinite(sd) else math.inf
    low, high = math.exp(mean - half), math.exp(min(mean + half, 700.0))
    return Paired(scenario, a, b, math.exp(mean), low, high, n, sd, max(n - 1, 0))


def apart(scenario: str, a: str, b: str, a_values: Sequence[float], b_values: Sequence[float]) -> Paired:
    """B against A from repeats measured alone, one after the other (N workers against one: they do not share the
    server CPUs, so side by side says nothing of them): the ratio of the geometric means with Welch's interval over
    both cells' repeats, so each one's spread between repeats — what a rerun moves — is in it."""
    la = [math.log(v) for v in a_values if v > 0]
    lb = [math.log(v) for v in b_values if v > 0]
    if not la or not lb:
        return Paired(scenario, a, b, math.nan, 0.0, math.inf, 0, math.inf, 0)
    mean = statistics.fmean(lb) - statistics.fmean(la)
    if len(la) < 2 or len(lb) < 2:
        return Paired(scenario, a, b, math.exp(mean), 0.0, math.inf, min(len(la), len(lb)), math.inf, 0)
    va, vb = statistics.variance(la) / len(la), statistics.variance(lb) / len(lb)
    se = math.sqrt(va + vb)
    # Welch-Satterthwaite degrees of freedom; equal repeats (sd 0) leave the smaller sample's
    df = (
        round((va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))) if se > 0 else min(len(la), len(lb)) - 1
    )
    half = Noise(se, max(df, 1)).t * se
    return Paired(scenario, a, b, math.exp(mean), math.exp(mean - half), math.exp(min(mean + half, 700.0)),
                  min(len(la), len(lb)), se, max(df, 1))  # fmt: skip


def cheaper(a: float, b: float, noise: Noise) -> bool:
    """Whether one window's CPU per request `a` is below `b` beyond the noise of one window's (95%)."""
    if not noise.known or a <= 0 or b <= 0:
        return False
    return math.log(b / a) > noise.t * noise.sd * math.sqrt(2)


def role(a: Mapping[str, object], b: Mapping[str, object]) -> str | None:
    """What two cells differ in, when it is one thing the lab compares (http goes with the server and the loop when
    either changes too; alone, it is compared as itself); a cell in two variants is compared with itself only."""
    if a.get("variant", "") != b.get("variant", ""):
        same = all(a.get(axis) == b.get(axis) for axis in (*ROLES, "http"))
        return "variant" if same else None
    differ = [axis for axis in ROLES if a.get(axis) != b.get(axis)]
    if not differ and a.get("http") != b.get("http"):
        return "http"  # the HTTP implementation alone: HTTP/1.1 vs HTTP/2 on one server, or h11 vs httptools
    return differ[0] if len(differ) == 1 else None


def undecided(found: Iterable[Paired]) -> set[str]:
    """Cells in a comparison that is not yet significant: they get more side-by-side rounds while time allows."""
    return {key for c in found if not c.significant for key in (c.a, c.b)}


def ranks(keys: Sequence[str], decided: Mapping[frozenset[str], str | None]) -> dict[str, int]:
    """Ranks from the pairwise verdicts: a cell's rank is 1 + the number of cells significantly faster than it
    (95%), each pair's verdict measured side by side (`decided`: the faster cell, or None for neither; a pair not
    measured together separates nothing). Cells the lab cannot tell apart share a rank; the ranks can skip (1, 1, 3)."""
    slower: dict[str, int] = dict.fromkeys(keys, 0)
    for a, b in combinations(keys, 2):
        winner = decided.get(frozenset((a, b)))
        if winner is not None:
            slower[b if winner == a else a] += 1
    return {key: 1 + n for key, n in slower.items()}
