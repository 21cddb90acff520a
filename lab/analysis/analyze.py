"""A bundle's one analysis: every figure that summary.csv, the charts, report.html, summary.md, the printed headline
and compare show is a field of the frozen `Analysis` that `analyze(bundle, matrix)` returns, computed once.

Per point (cell x scenario x offered rate, lab/results.py groups the repeats): its level at the run's mean machine
speed with its 95% interval (lab/stats.py), what limited it (lab/verdict.py), Locust ÷ wrk, the merged latency with
each histogram summarized once, its cost. Then the comparisons the lab states, each labelled by every axis that
changes between its two cells; per app and scenario a ranking of the stacks; and the leaders at equal load.

Ranks come from the pairwise verdicts: within one app and scenario every two stacks are compared at the run's pooled
noise (lab/stats.py: ranks), and a stack's rank is 1 + the number of stacks significantly faster than it (95%). Stacks
the lab cannot tell apart share a rank; ranks can skip (1, 1, 3).

At equal load (the sweep: one window per cell and offered rate) a p99's interval is distribution-free: the order
statistics at the binomial ranks around 0.99 n, read from the HDR counts, which assumes independent requests (queueing
makes neighbours alike, so it is if anything too narrow). The lowest p99 is named only when its interval lies below
every other cell's; the cheapest only when it is cheaper than the next by more than the run's noise of CPU per
request (pooled over the throughput repeats, lab/stats.py: pooled_noise).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lab.analysis import stats
from lab.analysis.points import Point, closed, median_of, noise, points, window_speed
from lab.analysis.side_by_side import Ratio, ratios, shared
from lab.bundle import Bundle, Calibration, Failure, GroupWindow, Manifest, PairWindow, StopTest
from loadtests import recorder
from loadtests.load import Latency
from servers.matrix import AXES, Cell, Matrix
from servers.own_app import with_own

# Stacks closer than this are said to depend on the machine: within it, the order of the FastAPI stacks flipped
# between two hosts of one type (docs/reference-runs.md).
FEW_PERCENT = 5.0
P99 = 0.99
LIMITED = ("client", "unclear", "shared")  # limits under which a figure is a floor, not the server's own

Stakes = Literal["conclusion", "figure", "low"]


def app_title(app: str, matrix: Matrix) -> str:
    return matrix.apps[app].title if app in matrix.apps else app


def stack_label(cell: Cell, matrix: Matrix) -> str:
    """The stack's one name, from the matrix: server · loop, then the HTTP implementation where the server offers a
    choice of it ("uvicorn · uvloop · httptools", "granian · uvloop": granian parses HTTP/1.1 in Rust, with no choice)
    and always for HTTP/2 ("granian · uvloop · h2c"),
    then the workers when more than one."""
    server = matrix.servers.get(cell.server)
    h1 = [h for h in server.http if h not in matrix.http2] if server else []
    shown = server is None or len(h1) > 1 or cell.http in matrix.http2  # h2c is always named
    parts = [cell.server, cell.loop] + ([cell.http] if shown else [])
    workers = f" ×{cell.workers}" if cell.workers > 1 else ""
    return " · ".join(parts) + workers + (f" @{cell.variant}" if cell.variant else "")


def cell_label(cell: Cell, matrix: Matrix) -> str:
    """A cell's one name: 'FastAPI on uvicorn · uvloop · httptools'."""
    return f"{app_title(cell.app, matrix)} on {stack_label(cell, matrix)}"


@dataclass(frozen=True)
class Figures:
    """Every figure of one point, as the outputs show it."""

    key: str
    cell: Cell
    stack: str  # stack_label
    label: str  # cell_label
    scenario: str
    offered: float  # 0: the closed model (throughput); else the sweep's offered rate
    repeats: int  # ok repeats
    failed: int
    rps: tuple[float, ...]  # the ok repeats' RPS as measured
    median: float  # their median, as measured
    level: float | None  # closed: the median at the run's mean machine speed (lab/results.py: Point.level)
    interval: tuple[float, float] | None  # closed: 95%; None when the noise is unknown (too few repeats)
    limit: str  # what the verdict says limited it (lab/verdict.py)
    shown_limit: str  # the same, but `shared` where the server and Locust shared CPUs and the client side was the limit
    limit_reason: str
    referee_rps: float | None
    referee_ratio: float | None  # Locust ÷ wrk as judged
    referee_server_cpus_us: float | None
    latency: Latency | None
    p99_interval: tuple[int, int] | None  # open model: 95% order-statistic interval of p99, µs
    late_p99_us: int | None
    errors: int
    rate_shortfall: bool
    server_us: float | None  # per answer: the server's processes' own CPU
    server_cpus_us: float | None  # per answer: the server's CPUs busy with anything (interrupts included)
    client_us: float | None
    projected_rps: float | None
    server_cpu_cores: float | None
    server_rss_mb: float | None
    startup_s: float | None
    busiest_load_cpu: float | None
    unsteady: int
    disturbed: int

    @property
    def ok(self) -> bool:
        return self.repeats > 0

    @property
    def p99_us(self) -> int | None:
        return self.latency.percentiles_us.get("p99") if self.latency else None

    @property
    def served(self) -> bool:
        """An open-model point that answered at least 95% of its scheduled requests."""
        return self.ok and not self.rate_shortfall


@dataclass(frozen=True)
class Stated:
    """A comparison the lab states (lab/stats.py: comparisons), with everything that changes between its cells."""

    comparison: stats.Comparison
    changes: tuple[str, ...]  # the axes that differ, in AXES order: ("loop", "http") changes both together
    a: str  # the cells' labels
    b: str
    limited: tuple[str, ...]  # labels of the cells whose figure is a floor (client, unclear or shared)
    measurable: bool  # False when the run's noise is unknown: then there is no interval and no verdict


@dataclass(frozen=True)
class Protocols:
    """HTTP/2 against HTTP/1.1 on the same server, loop, workers and app in one scenario: a comparison the lab states
    (changes ("http",)), turned so that the ratio is h2's throughput ÷ HTTP/1.1's, with its 95% interval."""

    scenario: str
    h1: Cell
    h2: Cell
    stack: str  # the HTTP/1.1 cell's stack label: "granian · uvloop"
    ratio: float
    low: float
    high: float
    significant: bool
    measurable: bool  # False when the run's noise is unknown: then there is no interval

    @property
    def interval(self) -> tuple[float, float] | None:
        return (self.low, self.high) if self.measurable and 0 < self.low <= self.high < math.inf else None


@dataclass(frozen=True)
class Ranked:
    """One stack in the ranking of one app and scenario."""

    key: str
    stack: str
    level: float
    interval: tuple[float, float] | None
    pct_of_best: float
    rank: int | None  # 1 + the number of stacks significantly faster; None when the noise is unknown
    limit: str  # shown_limit
    p99_us: int | None  # at the ranking's rate
    p99_interval: tuple[int, int] | None
    server_us: float | None  # the processes' own CPU per request at the ranking's rate
    pct_of_baseline: float | None  # % of the baseline app's level on the same stack (None for the baseline app)


@dataclass(frozen=True)
class Ranking:
    scenario: str
    app: str
    rate: float | None  # the common offered rate of the p99 and CPU columns
    stacks: tuple[Ranked, ...]  # fastest first


@dataclass(frozen=True)
class Leaders:
    """At one offered rate of one scenario: who answered with the lowest p99 and who cost the least CPU, each named
    only where the lab can tell it from the rest."""

    scenario: str
    rate: float
    offered_to: int  # cells offered this rate
    served: tuple[str, ...]  # keys of the cells that served it
    lowest_p99: str | None  # None: indistinguishable at this noise
    p99_tied: tuple[str, ...]  # the cells whose p99 interval reaches the lowest's (the lowest first)
    cheapest: str | None
    cost_tied: tuple[str, ...]


@dataclass(frozen=True)
class Overhead:
    """One stack's apps in one scenario: each app's level and its % of the baseline app's (the matrix's first)."""

    scenario: str
    stack: str
    levels: Mapping[str, float]
    pct: Mapping[str, float]


@dataclass(frozen=True)
class Versus:
    """B against A (the run's two variants) on one cell and scenario: throughput measured side by side in the pair
    rounds (lab/pairs.py), or else paired by throughput round; CPU per request side by side; and at the common offered
    rate each side's p99 (order-statistic interval) and the server's CPU per request."""

    scenario: str
    cell: Cell  # in the image's terms (no variant)
    label: str  # cell_label
    paired: stats.Paired
    rate: float | None
    p99: tuple[int | None, int | None]  # A, B at `rate`
    p99_interval: tuple[tuple[int, int] | None, tuple[int, int] | None]
    cost: tuple[float | None, float | None]  # the server's own CPU µs per request, A, B at `rate`
    cost_verdict: stats.Comparison | None  # A vs B at the run's noise of one window's CPU per request
    cost_paired: stats.Paired | None = None  # the server's own CPU per answer, B ÷ A, from the pair rounds
    unsaturated: int = 0  # pair windows whose server CPUs were not saturated (the client set the pace there)
    within_pct: float | None = None  # the median pair window's own interval half-width, % (one start of each)


@dataclass(frozen=True)
class Caveat:
    """A warning, with whether it can change a conclusion, only a figure, or neither."""

    stakes: Stakes
    text: str


@dataclass(frozen=True)
class Analysis:
    root: Path
    manifest: Manifest
    calibration: Calibration | None
    failures: tuple[Failure, ...]
    matrix: Matrix
    points: tuple[Figures, ...]  # matrix order, then scenario, then offered rate
    noise: Mapping[str, stats.Noise]  # per scenario
    cost_noise: Mapping[str, stats.Noise]  # per scenario: one window's noise of the server's CPU per request
    comparisons: tuple[Stated, ...]  # by scenario, kind and size
    rankings: tuple[Ranking, ...]  # scenario, then app, in matrix order
    leaders: tuple[Leaders, ...]  # scenario, then rate
    common_rate: Mapping[str, float | None]  # per swept scenario: the highest rate every swept cell served
    overhead: tuple[Overhead, ...]
    caveats: tuple[Caveat, ...]  # conclusion first, then figure, then low
    window_speed: tuple[float, int] | None  # the servers' CPU speed in the throughput windows (lab/results.py)
    shared_cpus: tuple[int, ...]
    referee_again: tuple[tuple[str, str, int], ...]  # (key, scenario, rounds) where wrk ran in more than one round
    versus: tuple[Versus, ...] = ()  # B against A per cell and scenario, when the run compared two variants
    protocols: tuple[Protocols, ...] = ()  # HTTP/2 ÷ HTTP/1.1 per server, loop, app and scenario (comparisons' order)
    stops: tuple[StopTest, ...] = ()  # the stop phase's records (lab/lifecycle.py reads them)

    @property
    def ab(self) -> tuple[str, str] | None:
        return self.manifest.config.ab_pair

    def slower(self, pct: float) -> list[Versus]:
        """Where B is slower than A by more than pct% with 95% confidence."""
        return [v for v in self.versus if v.paired.slower_than(pct)]

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def scenarios(self) -> tuple[str, ...]:
        """The scenarios with a measured throughput point, in matrix order."""
        return tuple(
            s for s in self.matrix.scenarios if any(p.ok and not p.offered and p.scenario == s for p in self.points)
        )

    @property
    def swept(self) -> tuple[str, ...]:
        return tuple(
            s for s in self.matrix.scenarios if any(p.ok and p.offered and p.scenario == s for p in self.points)
        )

    @property
    def apps(self) -> tuple[str, ...]:
        return tuple(a for a in self.matrix.apps if any(p.cell.app == a for p in self.points))

    @property
    def baseline(self) -> str:
        return next(iter(self.matrix.apps))

    @property
    def stacks(self) -> tuple[str, ...]:
        """The stacks measured, in matrix order."""
        return tuple(dict.fromkeys(p.stack for p in self.points))

    def closed(self, scenario: str | None = None) -> list[Figures]:
        return [p for p in self.points if p.ok and not p.offered and (scenario is None or p.scenario == scenario)]

    def swept_points(self, scenario: str) -> list[Figures]:
        return [p for p in self.points if p.ok and p.offered and p.scenario == scenario]

    def point(self, key: str, scenario: str, offered: float = 0.0) -> Figures | None:
        return next((p for p in self.points if (p.key, p.scenario, p.offered) == (key, scenario, offered)), None)

    def label(self, key: str) -> str:
        return next((p.label for p in self.points if p.key == key), key)

    def ranking(self, scenario: str, app: str) -> Ranking | None:
        return next((r for r in self.rankings if (r.scenario, r.app) == (scenario, app)), None)

    @property
    def half_width_pct(self) -> float | None:
        """The median over the throughput points of their 95% interval's half-width, % of the level: how sure the
        run's figures are (None without intervals)."""
        widths = [100 * (p.interval[1] - p.interval[0]) / 2 / p.level
                  for p in self.points if not p.offered and p.interval and p.level]  # fmt: skip
        return statistics.median(widths) if widths else None

    @property
    def measurable(self) -> bool:
        """Whether the run's noise is known in every scenario (else no interval, no rank and no verdict stands)."""
        return all(known(n) for n in self.noise.values())


def known(n: stats.Noise | None) -> bool:
    """The noise is known: the fit left degrees of freedom (with none, every interval would collapse to a point)."""
    return n is not None and n.df > 0 and math.isfinite(n.sd)


def quantile_interval(point: Point, q: float = P99) -> tuple[int, int] | None:
    """A distribution-free 95% interval of the q-quantile of the point's merged latency: the values at the order
    statistics whose ranks a Binomial(n, q) puts 2.5% below and above (clipped to the smallest and largest value)."""
    from scipy.stats import binom  # imported when needed: it takes most of a second

    n = point.histogram.get_total_count()
    if n == 0:
        return None
    low = max(int(binom.ppf((1 - stats.CONFIDENCE) / 2, n, q)), 1)
    high = min(int(binom.ppf(1 - (1 - stats.CONFIDENCE) / 2, n, q)) + 1, n)
    (at_low,) = recorder.values_at_ranks(point.histogram, [low], highest=False)
    (at_high,) = recorder.values_at_ranks(point.histogram, [high])
    return at_low, at_high


def projected_capacity(found: list[Point], key: str, scenario: str, server_cpus: int) -> float | None:
    """1e6 / the server CPUs' µs per answer at the highest swept rate the cell served: a projection, not a
    measurement, of what the server would do were the client never the limit."""
    served = [p for p in found if p.key == key and p.scenario == scenario and p.offered and p.repeats]
    served = [p for p in served if not p.rate_shortfall and p.server_cpus_us]
    if not served:
        return None
    top = max(served, key=lambda p: p.offered)
    return round(1e6 * server_cpus / top.server_cpus_us, 0) if top.server_cpus_us else None


def figures(
    p: Point, found: list[Point], noises: Mapping[str, stats.Noise], server_cpus: int, shared: bool, matrix: Matrix
) -> Figures:
    """The point's figures, each computed here once (lab/results.py: Point holds the rules)."""
    label, stack = cell_label(p.cell, matrix), stack_label(p.cell, matrix)
    empty = dict.fromkeys(
        ("level", "interval", "referee_rps", "referee_ratio", "referee_server_cpus_us", "latency", "p99_interval",
         "late_p99_us", "server_us", "server_cpus_us", "client_us", "projected_rps", "server_cpu_cores",
         "server_rss_mb", "startup_s", "busiest_load_cpu"),
    )  # fmt: skip
    if not p.repeats:
        return Figures(
            p.key, p.cell, stack, label, p.scenario, p.offered, 0, len(p.failed), (), 0.0, limit="", shown_limit="",
            limit_reason="", errors=0, rate_shortfall=False, unsteady=0, disturbed=0, **empty,
        )  # fmt: skip
    scenario_noise = noises.get(p.scenario)
    interval = None
    if not p.offered and known(scenario_noise):
        assert scenario_noise is not None
        interval = p.interval(scenario_noise)
    limit, reason = p.verdict(scenario_noise)
    loads = [r.load for r in p.repeats if r.load]
    servers = [r.server for r in p.repeats if r.server]
    return Figures(
        key=p.key, cell=p.cell, stack=stack, label=label, scenario=p.scenario, offered=p.offered,
        repeats=len(p.repeats), failed=len(p.failed), rps=tuple(p.rps), median=p.median,
        level=p.level(scenario_noise) if not p.offered else None, interval=interval, limit=limit,
        shown_limit="shared" if shared and limit in ("client", "unclear") else limit, limit_reason=reason,
        referee_rps=p.referee_rps, referee_ratio=p.referee_ratio(scenario_noise),
        referee_server_cpus_us=median_of([r.referee_cost.server_cpus_us for r in p.repeats if r.referee_cost]),
        latency=p.latency, p99_interval=quantile_interval(p) if p.offered else None,
        late_p99_us=p.lateness.percentiles_us.get("p99") if p.lateness else None,
        errors=sum(sum(x.errors.values()) for x in loads), rate_shortfall=p.rate_shortfall,
        server_us=p.server_us, server_cpus_us=p.server_cpus_us, client_us=p.client_us,
        projected_rps=None if p.offered else projected_capacity(found, p.key, p.scenario, server_cpus),
        server_cpu_cores=round(statistics.median(s.cpu_cores for s in servers), 3),
        server_rss_mb=round(max(s.rss_peak_bytes or 0 for s in servers) / 2**20, 1),
        startup_s=servers[0].startup_seconds,
        busiest_load_cpu=round(statistics.median(x.load_generator.busiest_cpu for x in loads), 3),
        unsteady=sum(1 for r in p.repeats if r.conditions and r.conditions.unsteady),
        disturbed=sum(1 for r in p.repeats if r.attempt > 1),
    )  # fmt: skip


def changes(a: Cell, b: Cell) -> tuple[str, ...]:
    return tuple(axis for axis in AXES if getattr(a, axis) != getattr(b, axis))


def stated(
    found: list[Point], noises: Mapping[str, stats.Noise], by_key: Mapping[tuple[str, str], Figures]
) -> list[Stated]:
    """Every comparison the lab states, ordered by scenario, what changes and size of the difference."""
    out = []
    for scenario, scenario_noise in noises.items():
        mine = closed(found, scenario)
        cells = {p.key: p.cell.model_dump() for p in mine}
        for c in stats.comparisons(scenario, cells, {p.key: p.by_round for p in mine}, scenario_noise):
            fa, fb = by_key[(c.a, scenario)], by_key[(c.b, scenario)]
            floors = tuple(f.label for f in (fa, fb) if f.shown_limit in LIMITED)
            out.append(Stated(c, changes(fa.cell, fb.cell), fa.label, fb.label, floors, known(scenario_noise)))
    order = [("server",), ("server", "http"), ("app",), ("loop",), ("loop", "http"), ("http",), ("workers",)]
    return sorted(
        out,
        key=lambda s: (
            s.comparison.scenario,
            order.index(s.changes) if s.changes in order else len(order),
            -abs(math.log(s.comparison.ratio)),
        ),
    )


def protocols(said: list[Stated], by_key: Mapping[tuple[str, str], Figures], matrix: Matrix) -> list[Protocols]:
    """The comparisons between an HTTP/1.1 cell and its HTTP/2 twin (nothing else differs), h2 ÷ h1."""
    out = []
    for s in said:
        c = s.comparison
        if s.changes != ("http",):
            continue
        a, b = by_key[(c.a, c.scenario)].cell, by_key[(c.b, c.scenario)].cell
        if (a.http in matrix.http2) == (b.http in matrix.http2):
            continue  # two HTTP/1.1 implementations (h11 vs httptools)
        if a.http in matrix.http2:
            h1, h2, ratio, low, high = b, a, c.ratio, c.low, c.high
        else:
            h1, h2, ratio, low, high = a, b, 1 / c.ratio, 1 / c.high, 1 / c.low
        out.append(
            Protocols(c.scenario, h1, h2, stack_label(h1, matrix), ratio, low, high, c.significant, s.measurable)
        )
    return out


def common_rate(found: list[Figures], rates: list[float]) -> float | None:
    """The highest of these rates that every swept cell of the scenario served: where to compare them all."""
    swept = {p.key for p in found}
    for rate in sorted(rates, reverse=True):
        at = [p for p in found if p.offered == rate]
        if swept and {p.key for p in at if p.served} == swept:
            return rate
    return None


def same_stack(cell: Cell, app: str) -> tuple[str, str, str, int, str, str]:
    return (cell.server, cell.loop, cell.http, cell.workers, app, cell.variant)


def rankings(
    found: list[Point], figures_of: Mapping[tuple[str, str, float], Figures], noises: Mapping[str, stats.Noise],
    rates: Mapping[str, float | None], matrix: Matrix, side: Sequence[Versus] = (),
) -> list[Ranking]:  # fmt: skip
    """Per scenario and app: the stacks, fastest first, each with its rank from the pairwise verdicts; in an A/B run
    a cell's two variants are ranked by their side-by-side verdict (`side`), not by the sequential rounds, whose
    machine changed speed between them."""
    baseline = next(iter(matrix.apps))
    out = []
    for scenario in [s for s in matrix.scenarios if s in noises]:
        n, rate = noises[scenario], rates.get(scenario)
        levels = {
            same_stack(f.cell, f.cell.app): f.level
            for f in figures_of.values()
            if f.scenario == scenario and not f.offered
        }
        for app in matrix.apps:
            mine = [p for p in closed(found, scenario) if p.cell.app == app]
            if not mine:
                continue
            decided = {
                frozenset((v.paired.a, v.paired.b)): (v.paired.b if v.paired.ratio > 1 else v.paired.a)
                if v.paired.significant else None
                for v in side if v.scenario == scenario
            }  # fmt: skip
            ranks = stats.ranks({p.key: n.adjusted(p.key, p.by_round) for p in mine}, n, decided)
            # by rank, then level: an A/B run's two variants are ranked by their side-by-side rounds, whose order
            # the sequential levels may not share
            shown = sorted((figures_of[(p.key, scenario, 0.0)] for p in mine),
                           key=lambda f: (ranks[f.key] if known(n) else 1, -(f.level or 0.0)))  # fmt: skip
            best = shown[0].level or 0.0
            rows = []
            for f in shown:
                level = f.level or 0.0
                at = figures_of.get((f.key, scenario, rate)) if rate else None
                base = levels.get(same_stack(f.cell, baseline))
                rows.append(
                    Ranked(
                        f.key, f.stack, level, f.interval, round(100 * level / best, 1) if best else 0.0,
                        ranks[f.key] if known(n) else None,
                        f.shown_limit, at.p99_us if at else None, at.p99_interval if at else None,
                        at.server_us if at else None,
                        round(100 * level / base, 1) if app != baseline and base else None,
                    )
                )  # fmt: skip
            out.append(Ranking(scenario, app, rate, tuple(rows)))
    return out


def leaders(swept: list[Figures], scenario: str, rate: float, cost_noise: stats.Noise | None) -> Leaders | None:
    """Among the cells that served `rate`: the lowest p99 where its interval lies below every other's, and the
    cheapest where it is significantly cheaper than the next (lab/stats.py: compare, on one window each)."""
    offered = [p for p in swept if p.offered == rate]
    served = [p for p in offered if p.served and p.p99_us and p.p99_interval]
    if not served:
        return None
    low = min(served, key=lambda p: p.p99_us or 0)
    assert low.p99_interval is not None
    tied = [low] + [p for p in served if p is not low and p.p99_interval and p.p99_interval[0] <= low.p99_interval[1]]
    costed = sorted((p for p in served if p.server_us), key=lambda p: p.server_us or 0.0)
    cheapest, cost_tied = None, ()
    if costed:
        first = costed[0]
        if known(cost_noise):
            assert cost_noise is not None
            cost_tied = tuple(
                p.key for p in costed
                if p is first or not stats.compare(scenario, "cost", p.key, first.key, [p.server_us or 0.0],
                                                   [first.server_us or 0.0], cost_noise).significant
            )  # fmt: skip
        else:
            cost_tied = tuple(p.key for p in costed)
        cheapest = first.key if len(cost_tied) == 1 else None
    return Leaders(
        scenario, rate, len(offered), tuple(p.key for p in offered if p.served),
        low.key if len(tied) == 1 else None, tuple(p.key for p in tied), cheapest, cost_tied,
    )  # fmt: skip


def cost_noise(found: list[Point], scenario: str) -> stats.Noise:
    """One window's noise of the server's own CPU per request: pooled over the throughput repeats of every cell."""
    return stats.pooled_noise(
        [r.cost.server_us for r in p.repeats if r.cost and r.cost.server_us] for p in closed(found, scenario)
    )


def overhead(figs: list[Figures], matrix: Matrix) -> list[Overhead]:
    """Per scenario and stack: each app's level, and as % of the baseline app on the same stack."""
    baseline = next(iter(matrix.apps))
    out = []
    for scenario in matrix.scenarios:
        by_stack: dict[str, dict[str, float]] = {}
        for f in figs:
            if f.scenario == scenario and f.ok and not f.offered and f.level is not None:
                by_stack.setdefault(f.stack, {})[f.cell.app] = f.level
        for stack, levels in by_stack.items():
            if levels.get(baseline, 0) > 0:
                pct = {app: round(100 * v / levels[baseline], 1) for app, v in levels.items()}
                out.append(Overhead(scenario, stack, {a: levels[a] for a in matrix.apps if a in levels}, pct))
    return out


LIMIT_MEANING = {
    "client": "the load generator, not the server, was the limit (wrk's figure is beside it)",
    "unclear": "both sides were near saturation, or the referee ran out of CPU: read it as approximate",
}


def caveats(
    bundle: Bundle, figs: list[Figures], said: list[Stated], ranked: list[Ranking], noises: Mapping[str, stats.Noise],
    shared: tuple[int, ...],
) -> list[Caveat]:  # fmt: skip
    """The warnings, ranked: those that can change a conclusion, those that move only a figure, and the rest, with
    the repeated low-stakes ones summed up in one line each (the full table has them per point)."""
    m = bundle.manifest
    out: list[Caveat] = []
    if m.status != "complete":
        note = m.parts[-1].note if m.parts else None
        out.append(
            Caveat("conclusion", f"The run is {m.status}{f' ({note})' if note else ''}: the results are partial.")
        )
    unknown = sorted(s for s, n in noises.items() if not known(n))
    if unknown:
        out.append(
            Caveat(
                "conclusion",
                f"No interval in {', '.join(unknown)}: too few repeats for the fit (rounds and CPU speed) to leave any "
                "degrees of freedom, so the noise is unknown and no rank or comparison can be told apart; more rounds "
                "(--repeats 3) give it.",
            )
        )
    for f in bundle.failures:
        out.append(Caveat("conclusion", f"FAILED {f.key} {f.scenario or ''} during {f.phase}: {f.error}"))
    closed_figs = [f for f in figs if f.ok and not f.offered]
    if shared:
        hit = [f for f in closed_figs if f.shown_limit == "shared"]
        out.append(
            Caveat(
                "conclusion",
                f"The server and the load generator shared CPUs {list(shared)}: they took CPU from each other, so "
                f"{len(hit)} of {len(closed_figs)} throughput figures are limited by that (`shared`) and every figure "
                "includes the contention. Pin them apart (SERVER_CPUS, LOAD_CPUS) for the server's own figures.",
            )
        )
    else:
        for f in closed_figs:
            if f.limit not in LIMIT_MEANING:
                continue
            # its figure is a floor: a conclusion that it is faster stands (only its size grows); one that it is
            # slower, or level with another, may not
            mine = [
                s for s in said if f.key in (s.comparison.a, s.comparison.b) and s.comparison.scenario == f.scenario
            ]
            weaker = [s for s in mine if s.comparison.faster != f.key]
            rank = next((r for g in ranked if g.scenario == f.scenario for r in g.stacks if r.key == f.key), None)
            tops = rank is not None and rank.rank in (1, None) and rank.pct_of_best == 100.0
            stakes: Stakes = "conclusion" if weaker or (rank and not tops) else "figure"
            consequence = (
                f"{len(weaker)} comparison(s) with it may change"
                if weaker
                else "it leads its comparisons anyway; only by how much is a floor"
            )
            out.append(
                Caveat(stakes, f"{f.label}, {f.scenario}: {f.limit}-limited — {LIMIT_MEANING[f.limit]}; {consequence}.")
            )
    for f in figs:
        where = f"{f.label}, {f.scenario}" + (f" at {f.offered:,.0f} requests/s" if f.offered else "")
        if f.failed and not f.ok:  # nothing left of the point: it is missing from every table and comparison
            out.append(Caveat("conclusion", f"{where}: every repeat ({f.failed}) failed, so it has no figure at all."))
        elif f.failed:
            out.append(Caveat("figure", f"{where}: {f.failed} failed repeat(s), left out of every figure."))
        if f.errors:
            out.append(Caveat("figure", f"{where}: {f.errors} wrong or failed answers (not counted as RPS)."))
    for s in m.skipped:
        out.append(Caveat("figure", f"Skipped {s.key} {s.scenario}: {s.reason}"))
    unsteady = [f for f in figs if f.unsteady]
    if unsteady:
        out.append(
            Caveat(
                "low",
                f"{sum(f.unsteady for f in unsteady)} unsteady repeat(s) on {len(unsteady)} point(s): a quarter-second "
                "below 80% of the window's median quarter (the machine or the server paused); they count in every "
                "figure, and the noise and intervals include them (the full table's `unsteady` column).",
            )
        )
    rerun = [f for f in figs if f.disturbed]
    if rerun:
        out.append(
            Caveat(
                "low",
                f"{sum(f.disturbed for f in rerun)} repeat(s) on {len(rerun)} point(s) were measured again after steal "
                "or other work disturbed them (the `re-run` column).",
            )
        )
    if bundle.calibration is None:
        out.append(Caveat("low", "No calibration in this run: the charts have no load-generator ceiling."))
    order: list[Stakes] = ["conclusion", "figure", "low"]
    return sorted(out, key=lambda c: order.index(c.stakes))


def ab_ratios(windows: Sequence[GroupWindow | PairWindow], pair: tuple[str, str]) -> dict[tuple[str, str], Ratio]:
    """Per cell (in the image's terms) and scenario of an A/B run's side-by-side rounds: B against A
    (lab/analysis/side_by_side.py: ratios)."""
    found = ratios([w for window in windows if (w := shared(window)) is not None])
    return {
        (Cell.parse(a).base.key, scenario): ratio
        for (scenario, a, b), ratio in found.items()
        if (Cell.parse(a).variant, Cell.parse(b).variant) == pair
    }


def versus(
    found: list[Point], figures_of: Mapping[tuple[str, str, float], Figures], noises: Mapping[str, stats.Noise],
    costs: Mapping[str, stats.Noise], rates: Mapping[str, float | None], pair: tuple[str, str], matrix: Matrix,
    windows: Sequence[GroupWindow | PairWindow] = (),
) -> list[Versus]:  # fmt: skip
    """B against A on every cell and scenario measured in both: from the pair rounds where the run had them
    (lab/stats.py: side_by_side), else paired by throughput round (lab/stats.py: ab)."""
    measured = ab_ratios(windows, pair)
    chosen: dict[tuple[str, str], stats.Paired] = {}
    for scenario, n in noises.items():
        mine = {p.key: p for p in closed(found, scenario)}
        named = {
            p.cell.base.key: (p.key, other)
            for p in mine.values()
            if p.cell.variant == pair[0] and (other := p.cell.model_copy(update={"variant": pair[1]}).key) in mine
        }
        speeded = {key: {r: v / n.speed_factor(n.shares.get(key, {}).get(r)) for r, v in p.by_round.items()}
                   for key, p in mine.items()}  # fmt: skip
        group = {base: mine[a].cell.server for base, (a, _) in named.items()}
        for paired in stats.ab(scenario, named, speeded, group):
            chosen[(Cell.parse(paired.a).base.key, scenario)] = paired
    chosen.update({point: side.throughput for point, side in measured.items()})
    out = []
    for (key, scenario), paired in chosen.items():
        rate = rates.get(scenario)
        at = [figures_of.get((k, scenario, rate)) if rate else None for k in (paired.a, paired.b)]
        cost = (at[0].server_us if at[0] else None, at[1].server_us if at[1] else None)
        verdict = None
        if cost[0] and cost[1] and known(costs.get(scenario)):
            verdict = stats.compare(scenario, "cost", paired.a, paired.b, [cost[0]], [cost[1]], costs[scenario])
        side = measured.get((key, scenario))
        cell = Cell.parse(key)
        out.append(
            Versus(
                scenario, cell, cell_label(cell, matrix), paired, rate,
                (at[0].p99_us if at[0] else None, at[1].p99_us if at[1] else None),
                (at[0].p99_interval if at[0] else None, at[1].p99_interval if at[1] else None),
                cost, verdict, side.cost if side else None, side.unsaturated if side else 0,
                side.within_pct if side else None,
            )
        )  # fmt: skip
    order = list(matrix.scenarios)
    return sorted(out, key=lambda v: (order.index(v.scenario) if v.scenario in order else len(order), v.paired.ratio))


def analyze(bundle: Bundle, matrix: Matrix) -> Analysis:
    """The bundle's one analysis (see the module's docstring)."""
    matrix = with_own(matrix, bundle.manifest.config.own)  # a run of your app has it as the app `own`
    found = points(bundle, matrix)
    fitted = noise(found)
    order = [*matrix.scenarios, *sorted(set(fitted) - set(matrix.scenarios))]
    noises = {s: fitted[s] for s in order if s in fitted}  # matrix order: the pages are the same file each time
    shared = tuple(sorted(set(bundle.manifest.config.server_cpus) & set(bundle.manifest.config.load_cpus)))
    server_cpus = len(bundle.manifest.config.server_cpus)
    figs = [figures(p, found, noises, server_cpus, bool(shared), matrix) for p in found]
    figures_of = {(f.key, f.scenario, f.offered): f for f in figs}
    by_key = {(f.key, f.scenario): f for f in figs if not f.offered}
    sweep = bundle.manifest.sweep
    swept = [s for s in matrix.scenarios if any(f.ok and f.offered and f.scenario == s for f in figs)]
    rates = {
        s: common_rate(
            [f for f in figs if f.ok and f.offered and f.scenario == s], sweep[s].common if s in sweep else []
        )
        for s in swept
    }
    said = stated(found, noises, by_key)
    costs = {s: cost_noise(found, s) for s in noises}
    pair = bundle.manifest.config.ab_pair
    side = (
        versus(found, figures_of, noises, costs, rates, pair, matrix, [*bundle.pairs, *bundle.groups]) if pair else []
    )
    ranked = rankings(found, figures_of, noises, rates, matrix, side)
    leading = []
    for s in swept:
        mine = [f for f in figs if f.ok and f.offered and f.scenario == s]
        for rate in sorted({f.offered for f in mine}):
            lead = leaders(mine, s, rate, costs.get(s))
            if lead:
                leading.append(lead)
    again = Counter((r.key, r.scenario) for r in bundle.repeats if r.referee)
    return Analysis(
        root=bundle.root,
        manifest=bundle.manifest,
        calibration=bundle.calibration,
        failures=tuple(bundle.failures),
        stops=tuple(bundle.stops),
        matrix=matrix,
        points=tuple(figs),
        noise=noises,
        cost_noise=costs,
        comparisons=tuple(said),
        rankings=tuple(ranked),
        leaders=tuple(leading),
        common_rate=rates,
        overhead=tuple(overhead(figs, matrix)),
        caveats=tuple(caveats(bundle, figs, said, ranked, noises, shared)),
        window_speed=window_speed(found),
        shared_cpus=shared,
        referee_again=tuple((k, s, n) for (k, s), n in again.items() if n > 1),
        versus=tuple(side),
        protocols=tuple(protocols(said, by_key, matrix)),
    )
