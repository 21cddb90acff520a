"""Every figure of one point (a cell x scenario x offered rate), as measured: the median of its repeats with their
range, what limited it, Locust ÷ wrk, the merged latency (its p99's distribution-free interval at equal load), its
cost and the server's footprint. No figure is fitted or adjusted: the comparisons between cells are the ratios
measured side by side (lab/analysis/side_by_side.py), not quotients of these."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from lab.analysis.labels import cell_label, stack_label
from lab.analysis.points import Point, median_of
from lab.analysis.stats import CONFIDENCE, Interval
from lab.verdict import Limit, ShownLimit
from loadtests import recorder
from loadtests.load import Latency
from servers.matrix import Cell, Matrix

P99 = 0.99
LIMITED = ("client", "unclear", "shared")  # limits under which a figure is a floor, not the server's own


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
    median: float  # their median
    measured: Interval | None  # the lowest and highest repeat (None without one)
    limit: Limit | None  # what the verdict says limited it (lab/verdict.py); None without a repeat
    shown_limit: ShownLimit | None  # the same, but `shared` where the server and Locust shared CPUs and the client
    # side was the limit
    limit_reason: str
    referee_rps: float | None
    referee_ratio: float | None  # Locust ÷ wrk, each wrk run beside the repeat it followed
    referee_server_cpus_us: float | None
    latency: Latency | None
    p99_interval: Interval | None  # open model: 95% order-statistic interval of p99, µs
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

    @property
    def floor(self) -> bool:
        """The figure is a floor: something other than the server limited it."""
        return self.shown_limit in LIMITED


def quantile_interval(point: Point, q: float = P99) -> Interval | None:
    """A distribution-free 95% interval of the q-quantile of the point's merged latency: the values at the order
    statistics whose ranks a Binomial(n, q) puts 2.5% below and above (clipped to the smallest and largest value)."""
    from scipy.stats import binom  # imported when needed: it takes most of a second

    n = point.histogram.get_total_count()
    if n == 0:
        return None
    low = max(int(binom.ppf((1 - CONFIDENCE) / 2, n, q)), 1)
    high = min(int(binom.ppf(1 - (1 - CONFIDENCE) / 2, n, q)) + 1, n)
    (at_low,) = recorder.values_at_ranks(point.histogram, [low], highest=False)
    (at_high,) = recorder.values_at_ranks(point.histogram, [high])
    return Interval(at_low, at_high)


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
    p: Point, found: list[Point], server_cpus: int, shared: bool, ceiling: float | None, matrix: Matrix
) -> Figures:
    """The point's figures, each computed here once (lab/analysis/points.py: Point holds the rules); `ceiling`: the
    calibration's client ceiling for the scenario, which the limit verdict weighs."""
    label, stack = cell_label(p.cell, matrix), stack_label(p.cell, matrix)
    if not p.repeats:
        return Figures(
            p.key, p.cell, stack, label, p.scenario, p.offered, 0, len(p.failed), (), 0.0, None, None, None, "",
            None, None, None, None, None, None, 0, False, None, None, None, None, None, None, None, None, 0, 0,
        )  # fmt: skip
    limit, reason = p.verdict(ceiling)
    loads = [r.load for r in p.repeats if r.load]
    servers = [r.server for r in p.repeats if r.server]
    return Figures(
        key=p.key, cell=p.cell, stack=stack, label=label, scenario=p.scenario, offered=p.offered,
        repeats=len(p.repeats), failed=len(p.failed), rps=tuple(p.rps), median=p.median,
        measured=Interval(min(p.rps), max(p.rps)) if p.rps else None, limit=limit,
        shown_limit="shared" if shared and limit in ("client", "unclear") else limit, limit_reason=reason,
        referee_rps=p.referee_rps, referee_ratio=p.referee_ratio,
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
