"""A bundle's repeats grouped into points (cell x scenario x offered rate), with the rules for their figures as
measured: the median and the range of the repeats, merged latency, verdict, Locust ÷ wrk, cost. lab/analysis/analyze.py
applies these once per point. Only `ok` repeats count in a point's figures; failed ones are counted beside them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from functools import cached_property

from hdrh.histogram import HdrHistogram

from lab.bundle import Bundle, Repeat
from lab.verdict import point_verdict, worst
from loadtests import recorder
from loadtests.load import Latency, RefereeResult
from servers.matrix import Cell, Matrix


def window_speed(found: list[Point]) -> tuple[float, int] | None:
    """The server CPUs' mean speed during the run's throughput windows (the speedometer's samples, inserts per
    CPU-second) and how many samples: what the run's servers ran on, to compare runs; None without samples."""
    samples = [x for p in closed(found) for r in p.repeats if r.conditions for x in r.conditions.speed_samples]
    return (statistics.fmean(samples), len(samples)) if samples else None


def median_of(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 2) if found else None


@dataclass(frozen=True)
class Point:
    """Every repeat of one cell x scenario x offered rate (0 = closed model)."""

    key: str
    cell: Cell
    scenario: str
    offered: float
    repeats: tuple[Repeat, ...]  # the ok ones, in repeat order
    failed: tuple[Repeat, ...] = field(default=())

    @property
    def rps(self) -> list[float]:
        return [r.load.rps for r in self.repeats if r.load]

    @property
    def median(self) -> float:
        """The median RPS of the repeats as measured."""
        return round(statistics.median(self.rps), 1) if self.rps else 0.0

    @property
    def carriers(self) -> list[Repeat]:
        """The repeats wrk ran right after (in their rounds), in round order."""
        return [r for r in self.repeats if r.referee]

    @property
    def cpu_limit(self) -> str:
        """The worst of the repeats' verdicts (lab/verdict.py: judged on CPU)."""
        return worst([r.verdict.limit for r in self.repeats if r.verdict])

    def verdict(self, ceiling: float | None) -> tuple[str, str]:
        """(limit, reason) for the point: its repeats' verdicts checked against the referee's runs and the client's
        own evidence (its CPU in those rounds, the calibration's ceiling: lab/verdict.py)."""
        if self.offered or not self.repeats:
            return self.cpu_limit, self.cpu_limit
        limits = [r.verdict.limit for r in self.repeats if r.verdict]
        tools = {c.referee.tool for c in self.carriers if c.referee}
        tool = tools.pop() if len(tools) == 1 else "wrk"  # h2load on an h2c cell
        return point_verdict(limits, self.referee_pairs, self.client_busy, ceiling, tool)

    @property
    def referee_pairs(self) -> list[tuple[float, float]]:
        """Per wrk run: the repeat it followed on the same warm server (the adjacent window), and wrk's RPS."""
        return [(c.load.rps, c.referee.rps) for c in self.carriers if c.referee and c.load]

    @property
    def client_busy(self) -> float:
        """The busiest load CPU or Locust worker in the rounds wrk ran in (the median over them; 0 without wrk)."""
        busy = [max(c.load.load_generator.busiest_cpu, c.load.load_generator.busiest_worker)
                for c in self.carriers if c.load]  # fmt: skip
        return statistics.median(busy) if busy else 0.0

    @property
    def referee_ratio(self) -> float | None:
        """Locust ÷ wrk as measured: per wrk run over the repeat it followed, the median over wrk's runs."""
        ratios = [rps / wrk for rps, wrk in self.referee_pairs if wrk > 0]
        return statistics.median(ratios) if ratios else None

    @property
    def referee(self) -> RefereeResult | None:
        """wrk's first run on the point (its CPU cost is the one reported)."""
        return next((r.referee for r in self.carriers), None)

    @property
    def referee_rps(self) -> float | None:
        """wrk's figure for the point: the median of its runs' RPS."""
        runs = [r.referee.rps for r in self.carriers if r.referee]
        return round(statistics.median(runs), 1) if runs else None

    @property
    def rate_shortfall(self) -> bool:
        return any(bool(r.load.rate_shortfall) for r in self.repeats if r.load)

    @property
    def server_cpus_us(self) -> float | None:
        return median_of([r.cost.server_cpus_us for r in self.repeats if r.cost])

    @property
    def server_us(self) -> float | None:
        return median_of([r.cost.server_us for r in self.repeats if r.cost])

    @property
    def client_us(self) -> float | None:
        return median_of([r.cost.client_us for r in self.repeats if r.cost])

    @cached_property
    def histogram(self) -> HdrHistogram:
        merged = recorder.new_histogram()
        for r in self.repeats:
            if r.load:
                merged.add(HdrHistogram.decode(r.load.latency.hdr.encode()))
        return merged

    @cached_property
    def latency(self) -> Latency:
        return recorder.latency_summary(self.histogram)

    @cached_property
    def lateness(self) -> Latency | None:
        late = [r.load.send_lateness for r in self.repeats if r.load and r.load.send_lateness]
        if not late:
            return None
        merged = recorder.new_histogram()
        for summary in late:
            merged.add(HdrHistogram.decode(summary.hdr.encode()))
        return recorder.latency_summary(merged)


def points(bundle: Bundle, matrix: Matrix) -> list[Point]:
    """The bundle's points in matrix order (cells as the matrix lists them), then scenario, then offered rate."""
    cell_order = {c.key: i for i, c in enumerate(matrix.all_cells())}
    scenario_order = {name: i for i, name in enumerate(matrix.scenarios)}
    groups: dict[tuple[str, str, float], list[Repeat]] = {}
    for r in bundle.repeats:
        groups.setdefault((r.key, r.scenario, r.offered_rps or 0.0), []).append(r)
    found = [
        Point(
            key,
            reps[0].cell,
            scenario,
            offered,
            tuple(sorted((r for r in reps if r.ok and r.load), key=lambda r: r.repeat)),
            tuple(r for r in reps if not r.ok),
        )
        for (key, scenario, offered), reps in groups.items()
    ]
    return sorted(
        found, key=lambda p: (cell_order.get(p.key, len(cell_order)), scenario_order.get(p.scenario, 99), p.offered)
    )


def closed(found: list[Point], scenario: str | None = None) -> list[Point]:
    return [p for p in found if not p.offered and p.repeats and (scenario is None or p.scenario == scenario)]
