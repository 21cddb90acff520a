"""What the lab states about cells against each other, each from ratios measured side by side
(lab/analysis/side_by_side.py): the comparisons between cells that differ in one thing, labelled by everything that
changes between them; per app and scenario a ranking of the stacks; each app's cost against the baseline app on a
stack; HTTP/2 against HTTP/1.1; an A/B run's B against A; and at equal offered load (the sweep), the leaders.

Ranks come from the pairwise verdicts: within one app and scenario, a stack's rank is 1 + the number of stacks
measured side by side with it and significantly faster (95%). Stacks the lab cannot tell apart share a rank; ranks can
skip (1, 1, 3). A pair whose windows were not all server-limited (the client set the pace in some) separates nothing.

At equal load (the sweep: one window per cell and offered rate) a p99's interval is distribution-free: the order
statistics at the binomial ranks around 0.99 n, read from the HDR counts, which assumes independent requests (queueing
makes neighbours alike, so it is if anything too narrow). The lowest p99 is named only when its interval lies below
every other cell's; the cheapest only when it is cheaper than the next by more than the run's noise of CPU per
request (pooled over the throughput repeats).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lab.analysis import stats
from lab.analysis.figures import Figures
from lab.analysis.labels import cell_label, stack_label
from lab.analysis.side_by_side import Ratio
from lab.analysis.stats import Interval, Paired
from servers.matrix import AXES, Cell, Matrix

Point = tuple[str, str, float]  # cell key, scenario, offered rate


def changes(a: Cell, b: Cell) -> tuple[str, ...]:
    return tuple(axis for axis in (*AXES, "variant") if getattr(a, axis) != getattr(b, axis))


@dataclass(frozen=True)
class Stated:
    """A comparison the lab states: two cells that differ in one thing (lab/analysis/stats.py: role), measured side
    by side; `paired` is b ÷ a, a the cell the matrix lists first."""

    ratio: Ratio
    changes: tuple[str, ...]  # the axes that differ, in AXES order: ("loop", "http") changes both together
    a: str  # the cells' labels
    b: str
    limited: tuple[str, ...]  # labels of the cells whose own figure is a floor (client, unclear or shared)

    @property
    def paired(self) -> Paired:
        return self.ratio.throughput

    @property
    def flagged(self) -> bool:
        """Some of its windows had the server CPUs not saturated: there the client set the pace, so its verdict
        separates nothing."""
        return self.ratio.unsaturated > 0

    @property
    def verdict(self) -> str | None:
        """The faster cell's key, when it is told apart and no window was flagged."""
        return None if self.flagged else self.paired.faster


def stated(
    ratios: Mapping[tuple[str, str, str], Ratio], by_key: Mapping[tuple[str, str], Figures], matrix: Matrix
) -> list[Stated]:
    """Every comparison the lab states, ordered by scenario, what changes and size of the difference."""
    order_of = {c.key: i for i, c in enumerate(matrix.all_cells())}
    out = []
    for (scenario, x, y), ratio in ratios.items():
        fx, fy = by_key.get((x, scenario)), by_key.get((y, scenario))
        if fx is None or fy is None or stats.role(fx.cell.model_dump(), fy.cell.model_dump()) is None:
            continue
        if order_of.get(y, 0) < order_of.get(x, 0):  # a: the one the matrix lists first
            fx, fy = fy, fx
            ratio = Ratio(ratio.throughput.turned(), ratio.cost.turned() if ratio.cost else None, ratio.unsaturated,
                          ratio.within_pct)  # fmt: skip
        floors = tuple(f.label for f in (fx, fy) if f.floor)
        out.append(Stated(ratio, changes(fx.cell, fy.cell), fx.label, fy.label, floors))
    kinds = [("variant",), ("server",), ("server", "http"), ("app",), ("loop",), ("loop", "http"), ("http",),
             ("workers",)]  # fmt: skip
    kind = {c: i for i, c in enumerate(kinds)}
    return sorted(
        out, key=lambda s: (s.paired.scenario, kind.get(s.changes, len(kinds)), -abs(math.log(s.paired.ratio)))
    )


def between(said: Sequence[Stated], scenario: str, x: str, y: str) -> Paired | None:
    """y ÷ x as a stated comparison measured it, whichever way round it was stated."""
    for s in said:
        p = s.paired
        if p.scenario == scenario and {p.a, p.b} == {x, y}:
            return p if (p.a, p.b) == (x, y) else p.turned()
    return None


@dataclass(frozen=True)
class Protocols:
    """HTTP/2 against HTTP/1.1 on the same server, loop, workers and app in one scenario: h2's throughput ÷ HTTP/1.1's,
    measured side by side."""

    h1: Cell
    h2: Cell
    stack: str  # the HTTP/1.1 cell's stack label: "granian · uvloop"
    paired: Paired  # h2 ÷ h1


def protocols(said: Sequence[Stated], matrix: Matrix) -> list[Protocols]:
    out = []
    for s in said:
        p = s.paired
        if s.changes != ("http",):
            continue
        a, b = Cell.parse(p.a), Cell.parse(p.b)
        if (a.http in matrix.http2) == (b.http in matrix.http2):
            continue  # two HTTP/1.1 implementations (h11 vs httptools)
        h1, h2, ratio = (a, b, p) if b.http in matrix.http2 else (b, a, p.turned())
        out.append(Protocols(h1, h2, stack_label(h1, matrix), ratio))
    return out


@dataclass(frozen=True)
class Ranked:
    """One stack in the ranking of one app and scenario."""

    key: str
    stack: str
    median: float  # its RPS, measured alone: the median of its repeats
    measured: Interval | None  # their range
    versus_best: Paired | None  # this stack ÷ the ranking's first, side by side (None for the first itself)
    rank: int | None  # 1 + the stacks significantly faster side by side; None when it was measured with none
    limit: str | None  # shown_limit
    p99_us: int | None  # at the ranking's rate
    p99_interval: Interval | None
    server_us: float | None  # the processes' own CPU per request at the ranking's rate
    versus_baseline: Paired | None  # this app ÷ the baseline app on the same stack, side by side


@dataclass(frozen=True)
class Ranking:
    scenario: str
    app: str
    rate: float | None  # the common offered rate of the p99 and CPU columns
    stacks: tuple[Ranked, ...]  # fastest first


def same_stack(cell: Cell, app: str) -> Cell:
    return cell.model_copy(update={"app": app})


def ranking(
    mine: list[Figures], said: Sequence[Stated], at: Mapping[str, Figures], baseline: str, scenario: str
) -> tuple[Ranked, ...]:
    """One app's stacks in a scenario (`at`: each one's figures at the common rate), fastest first: by rank, then
    by the side-by-side ratio to the leader, then by the median measured alone."""
    keys = [f.key for f in mine]
    decided = {frozenset((s.paired.a, s.paired.b)): s.verdict for s in said if s.paired.scenario == scenario}
    measured = {k for s in said if s.paired.scenario == scenario for k in (s.paired.a, s.paired.b)}
    ranks = stats.ranks(keys, decided)
    lead = min(mine, key=lambda f: (ranks[f.key], -f.median))
    score = {f.key: (p.ratio if (p := between(said, scenario, lead.key, f.key)) else 0.0) for f in mine}
    score[lead.key] = math.inf
    rows = []
    for f in sorted(mine, key=lambda f: (ranks[f.key], -score[f.key], -f.median)):
        there = at.get(f.key)
        base = f.cell.model_copy(update={"app": baseline}).key
        rows.append(
            Ranked(
                f.key, f.stack, f.median, f.measured,
                None if f.key == lead.key else between(said, scenario, lead.key, f.key),
                ranks[f.key] if f.key in measured else None, f.shown_limit,
                there.p99_us if there else None, there.p99_interval if there else None,
                there.server_us if there else None,
                between(said, scenario, base, f.key) if f.cell.app != baseline else None,
            )
        )  # fmt: skip
    return tuple(rows)


def rankings(
    figs: Sequence[Figures], said: Sequence[Stated], rates: Mapping[str, float | None], matrix: Matrix
) -> list[Ranking]:
    """Per scenario and app: the stacks, fastest first, each with its rank from the side-by-side verdicts."""
    baseline = next(iter(matrix.apps))
    out = []
    for scenario in matrix.scenarios:
        rate = rates.get(scenario)
        at = {f.key: f for f in figs if f.scenario == scenario and rate and f.offered == rate}
        for app in matrix.apps:
            mine = [f for f in figs if f.ok and not f.offered and f.scenario == scenario and f.cell.app == app]
            if mine:
                out.append(Ranking(scenario, app, rate, ranking(mine, said, at, baseline, scenario)))
    return out


@dataclass(frozen=True)
class Overhead:
    """One stack's apps in one scenario: each app ÷ the baseline app (the matrix's first), side by side."""

    scenario: str
    stack: str
    pct: Mapping[str, Paired]  # app -> its throughput ÷ the baseline app's on this stack


def overhead(figs: Sequence[Figures], said: Sequence[Stated], matrix: Matrix) -> list[Overhead]:
    baseline = next(iter(matrix.apps))
    out = []
    for f in figs:
        if not f.ok or f.offered or f.cell.app != baseline:
            continue
        ratios = {
            app: p
            for app in matrix.apps
            if app != baseline and (p := between(said, f.scenario, f.key, same_stack(f.cell, app).key))
        }
        if ratios:
            out.append(Overhead(f.scenario, f.stack, ratios))
    return out


@dataclass(frozen=True)
class Versus:
    """B against A (the run's two variants) on one cell and scenario: throughput and CPU per request measured side by
    side; at the common offered rate each side's p99 (order-statistic interval) and the server's CPU per request."""

    scenario: str
    cell: Cell  # in the image's terms (no variant)
    label: str  # cell_label
    ratio: Ratio  # B ÷ A
    rate: float | None
    p99: tuple[int | None, int | None]  # A, B at `rate`
    p99_interval: tuple[Interval | None, Interval | None]
    cost: tuple[float | None, float | None]  # the server's own CPU µs per request, A, B at `rate`

    @property
    def paired(self) -> Paired:
        return self.ratio.throughput


def versus(
    said: Sequence[Stated], figures_of: Mapping[Point, Figures], rates: Mapping[str, float | None],
    pair: tuple[str, str], matrix: Matrix,
) -> list[Versus]:  # fmt: skip
    """B against A on every cell and scenario measured in both variants side by side."""
    out = []
    for s in said:
        if s.changes != ("variant",):
            continue
        ratio, p = s.ratio, s.paired
        if Cell.parse(p.a).variant != pair[0]:  # turned so that it reads B ÷ A
            ratio = Ratio(p.turned(), ratio.cost.turned() if ratio.cost else None, ratio.unsaturated, ratio.within_pct)
        a, b = ratio.throughput.a, ratio.throughput.b
        rate = rates.get(p.scenario)
        at = [figures_of.get((k, p.scenario, rate)) if rate else None for k in (a, b)]
        base = Cell.parse(a).base
        out.append(
            Versus(
                p.scenario, base, cell_label(base, matrix), ratio, rate,
                (at[0].p99_us if at[0] else None, at[1].p99_us if at[1] else None),
                (at[0].p99_interval if at[0] else None, at[1].p99_interval if at[1] else None),
                (at[0].server_us if at[0] else None, at[1].server_us if at[1] else None),
            )
        )  # fmt: skip
    order = list(matrix.scenarios)
    return sorted(out, key=lambda v: (order.index(v.scenario) if v.scenario in order else len(order), v.paired.ratio))


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


def leaders(swept: Sequence[Figures], scenario: str, rate: float, cost_noise: stats.Noise) -> Leaders | None:
    """Among the cells that served `rate`: the lowest p99 where its interval lies below every other's, and the
    cheapest where it is cheaper than the next beyond one window's noise of CPU per request."""
    offered = [p for p in swept if p.offered == rate]
    served = [p for p in offered if p.served and p.p99_us and p.p99_interval]
    if not served:
        return None
    low = min(served, key=lambda p: p.p99_us or 0)
    assert low.p99_interval is not None
    tied = [low] + [
        p for p in served if p is not low and p.p99_interval and p.p99_interval.low <= low.p99_interval.high
    ]
    costed = sorted((p for p in served if p.server_us), key=lambda p: p.server_us or 0.0)
    cheapest, cost_tied = None, ()
    if costed:
        first = costed[0]
        cost_tied = tuple(
            p.key for p in costed if p is first or not stats.cheaper(first.server_us or 0.0, p.server_us or 0.0,
                                                                     cost_noise)
        )  # fmt: skip
        cheapest = first.key if len(cost_tied) == 1 else None
    return Leaders(
        scenario, rate, len(offered), tuple(p.key for p in offered if p.served),
        low.key if len(tied) == 1 else None, tuple(p.key for p in tied), cheapest, cost_tied,
    )  # fmt: skip


def common_rate(found: Sequence[Figures], rates: Sequence[float]) -> float | None:
    """The highest of these rates that every swept cell of the scenario served: where to compare them all."""
    swept = {p.key for p in found}
    for rate in sorted(rates, reverse=True):
        at = [p for p in found if p.offered == rate]
        if swept and {p.key for p in at if p.served} == swept:
            return rate
    return None
