"""A bundle's repeats grouped into points (cell x scenario x offered rate) with their merged latency: the one place
that groups and merges, for summary.csv, the charts, the report and compare."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from hdrh.histogram import HdrHistogram

from core.host import atomic_write
from lab.bundle import Bundle, CellInfo, Repeat
from loadtests import recorder
from loadtests.load import Latency
from servers.matrix import Matrix, load


@dataclass(frozen=True)
class Point:
    """Every repeat of one cell x scenario x offered rate (0 = closed model)."""

    key: str
    cell: CellInfo
    scenario: str
    offered: float
    repeats: tuple[Repeat, ...]

    @property
    def stack(self) -> str:
        """server loop/http (xN workers): what the cell runs on, without the app."""
        c = self.cell
        return f"{c.server} {c.loop}/{c.http}" + (f" ×{c.workers}" if c.workers > 1 else "")

    @property
    def rps(self) -> list[float]:
        return [r.load.rps for r in self.repeats]

    @property
    def median(self) -> float:
        return round(statistics.median(self.rps), 1)

    @property
    def client_bound(self) -> bool:
        return any(r.load.client_bound for r in self.repeats)

    @property
    def rate_shortfall(self) -> bool:
        return any(bool(r.load.rate_shortfall) for r in self.repeats)

    @cached_property
    def histogram(self) -> HdrHistogram:
        merged = recorder.new_histogram()
        for r in self.repeats:
            merged.add(HdrHistogram.decode(r.load.latency.hdr.encode()))
        return merged

    @cached_property
    def latency(self) -> Latency:
        return recorder.latency_summary(self.histogram)


def points(bundle: Bundle, matrix: Matrix | None = None) -> list[Point]:
    """The bundle's points in matrix order (cells as the matrix lists them), then scenario, then offered rate."""
    matrix = matrix or load()
    cell_order = {c.key: i for i, c in enumerate(matrix.all_cells())}
    scenario_order = {name: i for i, name in enumerate(matrix.scenarios)}
    groups: dict[tuple[str, str, float], list[Repeat]] = {}
    for r in bundle.repeats:
        groups.setdefault((r.key, r.scenario, r.offered_rps or 0.0), []).append(r)
    found = [
        Point(key, reps[0].cell, scenario, offered, tuple(sorted(reps, key=lambda r: r.repeat)))
        for (key, scenario, offered), reps in groups.items()
    ]
    return sorted(
        found, key=lambda p: (cell_order.get(p.key, len(cell_order)), scenario_order.get(p.scenario, 99), p.offered)
    )


# --- summary.csv: one row per point, and one per failure -------------------------------------------------------------

SUMMARY_FIELDS = [
    "key", "server", "loop", "http", "workers", "app", "scenario", "offered_rps", "status", "repeats",
    "rps_median", "rps_min", "rps_max", "rps_spread_pct",
    "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us",
    "errors", "client_bound", "rate_shortfall",
    "server_cpu_cores", "server_rss_mb", "startup_s", "load_cpu_busy",
]  # fmt: skip


def summary_row(point: Point) -> dict[str, Any]:
    rps, latency, reps = point.rps, point.latency.percentiles_us, point.repeats
    median = statistics.median(rps)
    return {
        "key": point.key,
        **point.cell.model_dump(),
        "scenario": point.scenario,
        "offered_rps": point.offered or None,
        "status": "ok",
        "repeats": len(reps),
        "rps_median": round(median, 1),
        "rps_min": round(min(rps), 1),
        "rps_max": round(max(rps), 1),
        "rps_spread_pct": round(100 * (max(rps) - min(rps)) / median, 1) if median else None,
        "p50_us": latency.get("p50"),
        "p90_us": latency.get("p90"),
        "p99_us": latency.get("p99"),
        "p99_9_us": latency.get("p99.9"),
        "max_us": point.latency.max_us,
        "errors": sum(sum(r.load.errors.values()) for r in reps),
        "client_bound": point.client_bound,
        "rate_shortfall": point.rate_shortfall,
        "server_cpu_cores": round(statistics.median(r.server.cpu_cores for r in reps), 3),
        "server_rss_mb": round(max(r.server.rss_peak_bytes or 0 for r in reps) / 2**20, 1),
        "startup_s": reps[0].server.startup_seconds,
        "load_cpu_busy": round(statistics.median(r.load.load_generator.cpu_busy for r in reps), 3),
    }


def summarize(bundle: Bundle, matrix: Matrix | None = None) -> list[dict[str, Any]]:
    """Median RPS with min/max across repeats; latency from the repeats' histograms merged; then the failures."""
    rows = [summary_row(p) for p in points(bundle, matrix)]
    for f in bundle.failures:
        rows.append({"key": f.key, **f.cell.model_dump(), "scenario": f.scenario or "", "status": f"failed: {f.phase}"})
    return rows


def write_summary_csv(bundle: Bundle, matrix: Matrix | None = None) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, restval="")
    writer.writeheader()
    writer.writerows(summarize(bundle, matrix))
    atomic_write(bundle.root / "summary.csv", buffer.getvalue())
