"""A bundle's one analysis: every figure that summary.csv, the charts, report.html, summary.md, the printed headline
and compare show is a field of the frozen `Analysis` that `analyze(bundle, matrix)` returns, computed once.

In order: the points (lab/analysis/points.py groups the repeats) and each one's figures as measured
(lab/analysis/figures.py); the side-by-side windows and the ratio of every two cells measured together
(lab/analysis/side_by_side.py); from those, what the lab states (lab/analysis/comparisons.py); then the warnings
(lab/analysis/caveats.py).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.analysis import comparisons as said_of
from lab.analysis import stats
from lab.analysis.caveats import Caveat, caveats
from lab.analysis.comparisons import Leaders, Overhead, Protocols, Ranking, Stated, Versus
from lab.analysis.figures import Figures, figures
from lab.analysis.points import closed, points, window_speed
from lab.analysis.side_by_side import Ratio, ratios, shared
from lab.analysis.stops import ServerStops
from lab.bundle import Bundle, Calibration, Failure, Manifest, StopTest
from servers.matrix import Matrix
from servers.own_app import with_own

# Stacks closer than this are said to depend on the machine (a rerun's ratio can move this far: docs/method.md).
FEW_PERCENT = 5.0


@dataclass(frozen=True)
class Analysis:
    root: Path
    manifest: Manifest
    calibration: Calibration | None
    failures: tuple[Failure, ...]
    matrix: Matrix
    points: tuple[Figures, ...]  # matrix order, then scenario, then offered rate
    ratios: Mapping[tuple[str, str, str], Ratio]  # (scenario, a, b) -> b ÷ a, every two cells measured together
    cost_noise: Mapping[str, stats.Noise]  # per scenario: one window's noise of the server's CPU per request
    comparisons: tuple[Stated, ...]  # by scenario, kind and size
    rankings: tuple[Ranking, ...]  # scenario, then app, in matrix order
    leaders: tuple[Leaders, ...]  # scenario, then rate
    common_rate: Mapping[str, float | None]  # per swept scenario: the highest rate every swept cell served
    overhead: tuple[Overhead, ...]
    caveats: tuple[Caveat, ...]  # conclusion first, then figure, then low
    window_speed: tuple[float, int] | None  # the servers' CPU speed in the throughput windows (lab/analysis/points.py)
    shared_cpus: tuple[int, ...]
    referee_again: tuple[tuple[str, str, int], ...]  # (key, scenario, rounds) where wrk ran in more than one round
    versus: tuple[Versus, ...] = ()  # B against A per cell and scenario, when the run compared two variants
    protocols: tuple[Protocols, ...] = ()  # HTTP/2 ÷ HTTP/1.1 per server, loop, app and scenario (comparisons' order)
    stops: tuple[StopTest, ...] = ()  # the stop phase's records
    stops_by_server: tuple[ServerStops, ...] = ()  # and what they say per server (lab/analysis/stops.py)

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
        """The median over the stated comparisons of their 95% interval's half-width, %: how sure the run's ratios
        are (None without one)."""
        widths = [s.paired.half_pct for s in self.comparisons if s.paired.measurable]
        return statistics.median(widths) if widths else None


def cost_noise(found: list, scenario: str) -> stats.Noise:
    """One window's noise of the server's own CPU per request: pooled over the throughput repeats of every cell."""
    return stats.pooled_noise(
        [r.cost.server_us for r in p.repeats if r.cost and r.cost.server_us] for p in closed(found, scenario)
    )


def ceilings(calibration: Calibration | None) -> dict[str, float]:
    """The calibration's client ceiling per scenario."""
    return {p.scenario: p.ceiling_rps for p in calibration.points} if calibration else {}


def analyze(bundle: Bundle, matrix: Matrix) -> Analysis:
    """The bundle's one analysis (see the module's docstring)."""
    from lab.analysis.stops import by_server

    matrix = with_own(matrix, bundle.manifest.config.own)  # a run of your app has it as the app `own`
    found = points(bundle, matrix)
    config = bundle.manifest.config
    shared_cpus = tuple(sorted(set(config.server_cpus) & set(config.load_cpus)))
    top = ceilings(bundle.calibration)
    figs = [figures(p, found, len(config.server_cpus), bool(shared_cpus), top.get(p.scenario), matrix) for p in found]
    figures_of = {(f.key, f.scenario, f.offered): f for f in figs}
    by_key = {(f.key, f.scenario): f for f in figs if not f.offered}
    measured = ratios([w for window in [*bundle.pairs, *bundle.groups] if (w := shared(window)) is not None])
    sweep = bundle.manifest.sweep
    swept = [s for s in matrix.scenarios if any(f.ok and f.offered and f.scenario == s for f in figs)]
    rates = {
        s: said_of.common_rate([f for f in figs if f.ok and f.offered and f.scenario == s],
                               sweep[s].common if s in sweep else [])
        for s in swept
    }  # fmt: skip
    said = said_of.stated(measured, by_key, matrix)
    costs = {s: cost_noise(found, s) for s in {f.scenario for f in figs if not f.offered}}
    ranked = said_of.rankings(figs, said, rates, matrix)
    leading = [
        lead
        for s in swept
        for rate in sorted({f.offered for f in figs if f.ok and f.offered and f.scenario == s})
        if (lead := said_of.leaders([f for f in figs if f.ok and f.offered and f.scenario == s], s, rate,
                                    costs.get(s, stats.Noise(float("inf"), 0))))
    ]  # fmt: skip
    again = Counter((r.key, r.scenario) for r in bundle.repeats if r.referee)
    pair = config.ab_pair
    return Analysis(
        root=bundle.root, manifest=bundle.manifest, calibration=bundle.calibration, failures=tuple(bundle.failures),
        matrix=matrix, points=tuple(figs), ratios=measured, cost_noise=costs, comparisons=tuple(said),
        rankings=tuple(ranked), leaders=tuple(leading), common_rate=rates,
        overhead=tuple(said_of.overhead(figs, said, matrix)),
        caveats=tuple(caveats(bundle, figs, said, ranked, shared_cpus)), window_speed=window_speed(found),
        shared_cpus=shared_cpus, referee_again=tuple((k, s, n) for (k, s), n in again.items() if n > 1),
        versus=tuple(said_of.versus(said, figures_of, rates, pair, matrix)) if pair else (),
        protocols=tuple(said_of.protocols(said, matrix)), stops=tuple(bundle.stops),
        stops_by_server=tuple(by_server(list(bundle.stops))),
    )  # fmt: skip
