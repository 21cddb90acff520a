"""A bundle's repeats grouped into points (cell x scenario x offered rate), with the rules for their figures: merged
latency, interval, level, verdict, Locust ÷ wrk, cost; and the run's noise per scenario. lab/analysis.py applies these
once per point; the runner reads the rough referee ratio and the speed shares while a run goes on.

Only `ok` repeats count in a point's figures; failed ones are counted beside them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from hdrh.histogram import HdrHistogram

from lab.analysis import stats
from lab.bundle import Bundle, Repeat
from lab.measure import speed as speedometer
from lab.measure.speed import MIN_SPEED_SAMPLES
from lab.verdict import point_verdict, referee_ratio, worst
from loadtests import recorder
from loadtests.load import Latency, RefereeResult
from servers.matrix import Cell, Matrix


def point_full_speed(repeats: Iterable[Repeat]) -> float | None:
    """The server CPU's full speed while it served this point, from every sample of its windows and wrk's (its own,
    so that a server that slows the sampler a little reads as a slower full speed, not as a slow machine)."""
    return speedometer.full_speed(
        x for r in repeats if r.conditions for x in (*r.conditions.speed_samples, *r.conditions.referee_speed)
    )


def speed_shares(repeats: Iterable[Repeat]) -> dict[int, float]:
    """Each repeat's mean CPU speed over the point's full speed, by round; empty unless every repeat has enough
    samples (then the analysis fits no speed term for the scenario)."""
    repeats = list(repeats)
    full = point_full_speed(repeats)
    if not full or any(not r.conditions or len(r.conditions.speed_samples) < MIN_SPEED_SAMPLES for r in repeats):
        return {}
    return {r.repeat: statistics.fmean(r.conditions.speed_samples) / full for r in repeats if r.conditions}


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
    def stack(self) -> str:
        """server loop/http (xN workers): what the cell runs on, without the app."""
        c = self.cell
        return f"{c.server} {c.loop}/{c.http}" + (f" ×{c.workers}" if c.workers > 1 else "")

    @property
    def rps(self) -> list[float]:
        return [r.load.rps for r in self.repeats if r.load]

    @property
    def by_round(self) -> dict[int, float]:
        """RPS of each ok repeat by its round (a closed point's repeat number is its round)."""
        return {r.repeat: r.load.rps for r in self.repeats if r.load}

    @cached_property
    def shares(self) -> dict[int, float]:
        """Each ok repeat's CPU speed share by round (lab/speedometer.py); empty unless every repeat has one."""
        return speed_shares(self.repeats)

    @property
    def carriers(self) -> list[Repeat]:
        """The repeats wrk ran right after (in their rounds), in round order."""
        return [r for r in self.repeats if r.referee]

    def referee_share(self, carrier: Repeat) -> float | None:
        """The server CPU's speed share during a wrk run, against the point's full speed (None without samples)."""
        if not carrier.conditions or len(carrier.conditions.referee_speed) < MIN_SPEED_SAMPLES:
            return None
        full = point_full_speed(self.repeats)
        return statistics.fmean(carrier.conditions.referee_speed) / full if full else None

    def interval(self, noise: stats.Noise) -> tuple[float, float]:
        """The 95% interval of the point's RPS (lab/stats.py: adjusted by the fit, the run's pooled noise)."""
        return stats.interval(noise.adjusted(self.key, self.by_round), noise)

    @property
    def median(self) -> float:
        """The median RPS of the repeats as measured."""
        return round(statistics.median(self.rps), 1) if self.rps else 0.0

    def level(self, noise: stats.Noise | None) -> float:
        """The median RPS at the run's mean machine speed: of the repeats with the fit's round and CPU-speed factors
        divided out (lab/stats.py) — the figure the interval and the comparisons speak of; as measured without a fit."""
        if noise is None or not self.rps:
            return self.median
        return round(statistics.median(noise.adjusted(self.key, self.by_round)), 1)

    @property
    def cpu_limit(self) -> str:
        """The worst of the repeats' verdicts (lab/verdict.py: judged on CPU)."""
        return worst([r.verdict.limit for r in self.repeats if r.verdict])

    def verdict(self, noise: stats.Noise | None) -> tuple[str, str]:
        """(limit, reason) for the point: its repeats' verdicts checked against the referee, beyond the noise."""
        if self.offered or not self.repeats:
            return self.cpu_limit, self.cpu_limit
        limits = [r.verdict.limit for r in self.repeats if r.verdict]
        tools = {c.referee.tool for c in self.carriers if c.referee}
        tool = tools.pop() if len(tools) == 1 else "wrk"  # h2load on an h2c cell
        return point_verdict(limits, self.referee_pairs(noise), self.referee_noise(noise), tool)

    def referee_noise(self, noise: stats.Noise | None) -> float:
        """One standard deviation (a fraction) of Locust's estimate over wrk's figure: the median of n adjusted
        repeats carries the run's noise / n; each of wrk's m runs the run's noise when its own CPU speed was measured
        (Locust's figure is then brought to that speed), else a lone run's noise (nothing fitted out), / m."""
        if noise is None or not math.isfinite(noise.sd):
            return 0.0
        carriers = self.carriers
        measured = noise.beta is not None and all(self.referee_share(c) is not None for c in carriers)
        lone = noise.sd if measured or not math.isfinite(noise.unblocked_sd) else noise.unblocked_sd
        return math.exp(math.sqrt(lone**2 / max(len(carriers), 1) + noise.sd**2 / max(len(self.rps), 1))) - 1

    def referee_ratio(self, noise: stats.Noise | None) -> float | None:
        """Locust ÷ wrk as the verdict judges it (lab/verdict.py: referee_ratio; None without wrk)."""
        return referee_ratio(self.referee_pairs(noise))

    def referee_pairs(self, noise: stats.Noise | None) -> list[tuple[list[float], float]]:
        """Per wrk run: Locust's repeats as they would have been under it, and its RPS."""
        return [(self.in_round_of(c, noise), c.referee.rps) for c in self.carriers if c.referee]

    def in_round_of(self, carrier: Repeat, noise: stats.Noise | None) -> list[float]:
        """The repeats as they would have been under this wrk run (its round, its CPU speed): each adjusted by the
        fit, times the factor of that round and of the speed its samples found. Without a fit, as measured."""
        if noise is None or not (noise.factors or noise.beta is not None):
            return self.rps
        share = self.referee_share(carrier)
        factor = noise.factors.get(carrier.repeat, 1.0) * noise.speed_factor(
            share if share is not None else self.shares.get(carrier.repeat)
        )
        return [v * factor for v in noise.adjusted(self.key, self.by_round)]

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


def noise(found: list[Point]) -> dict[str, stats.Noise]:
    """Per scenario: the run's pooled repeat noise, the rounds' drift and the CPU's speed fitted out (lab/stats.py)."""
    scenarios = {p.scenario for p in found if not p.offered}
    by_scenario = {s: closed(found, s) for s in scenarios}
    return {
        s: stats.blocked_noise({p.key: p.by_round for p in ps}, {p.key: p.shares for p in ps})
        for s, ps in by_scenario.items()
    }
