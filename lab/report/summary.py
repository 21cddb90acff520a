"""summary.csv: one row per point of the bundle's one analysis (lab/analysis/analyze.py), and one per failure."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from core.host import atomic_write
from lab.analysis.analyze import Analysis, Figures, analyze
from lab.bundle import Bundle
from servers.matrix import Cell, Matrix

SUMMARY_FIELDS = [
    "key", "server", "loop", "http", "workers", "app", "scenario", "offered_rps", "status", "repeats",
    "repeats_failed", "rps_median", "rps_at_mean_speed", "rps_ci_low", "rps_ci_high", "rps_min", "rps_max", "limit",
    "referee_rps", "lab_vs_referee", "limit_reason", "referee_server_cpus_us_per_req", "p50_us", "p90_us", "p99_us",
    "p99_9_us", "max_us", "send_late_p99_us", "errors", "rate_shortfall", "server_us_per_req", "server_cpus_us_per_req",
    "client_us_per_req", "projected_rps", "server_cpu_cores", "server_rss_mb", "startup_s", "busiest_load_cpu",
    "unsteady", "disturbed",
    # added after the columns above, which keep their meaning: the cell's one name, and the limit as the report
    # states it (`shared` where the server and Locust shared CPUs), the p99's 95% interval at equal load
    "label", "limit_shown", "p99_ci_low_us", "p99_ci_high_us",
]  # fmt: skip


def columns(cell: Cell) -> dict[str, Any]:
    """The cell's axes as columns; its variant is in the key (uvicorn-asyncio-h11-w1-raw@B)."""
    return cell.model_dump(exclude={"variant"})


def summary_row(f: Figures) -> dict[str, Any]:
    base = {
        "key": f.key, **columns(f.cell), "scenario": f.scenario, "offered_rps": f.offered or None, "repeats": f.repeats,
        "repeats_failed": f.failed, "label": f.label,
    }  # fmt: skip
    if not f.ok or f.latency is None:
        return {**base, "status": "failed: every repeat"}
    latency = f.latency.percentiles_us
    interval = f.interval
    return {
        **base,
        "status": "ok",
        "rps_median": f.median,
        "rps_at_mean_speed": f.level,
        "rps_ci_low": round(interval[0], 1) if interval else None,
        "rps_ci_high": round(interval[1], 1) if interval else None,
        "rps_min": round(min(f.rps), 1),
        "rps_max": round(max(f.rps), 1),
        "limit": f.limit,
        "referee_rps": f.referee_rps,
        "lab_vs_referee": round(f.referee_ratio, 3) if f.referee_ratio is not None else None,
        "limit_reason": f.limit_reason,
        "referee_server_cpus_us_per_req": f.referee_server_cpus_us,
        "p50_us": latency.get("p50"),
        "p90_us": latency.get("p90"),
        "p99_us": latency.get("p99"),
        "p99_9_us": latency.get("p99.9"),
        "max_us": f.latency.max_us,
        "send_late_p99_us": f.late_p99_us,
        "errors": f.errors,
        "rate_shortfall": f.rate_shortfall if f.offered else None,
        "server_us_per_req": f.server_us,
        "server_cpus_us_per_req": f.server_cpus_us,
        "client_us_per_req": f.client_us,
        "projected_rps": f.projected_rps,
        "server_cpu_cores": f.server_cpu_cores,
        "server_rss_mb": f.server_rss_mb,
        "startup_s": f.startup_s,
        "busiest_load_cpu": f.busiest_load_cpu,
        "unsteady": f.unsteady,
        "disturbed": f.disturbed,
        "limit_shown": f.shown_limit,
        "p99_ci_low_us": f.p99_interval[0] if f.p99_interval else None,
        "p99_ci_high_us": f.p99_interval[1] if f.p99_interval else None,
    }


def summary_rows(a: Analysis) -> list[dict[str, Any]]:
    """One row per point (median RPS with its 95% interval and min/max, merged latency, verdict, cost), then one
    per failure."""
    rows = [summary_row(f) for f in a.points]
    for f in a.failures:
        rows.append({"key": f.key, **columns(f.cell), "scenario": f.scenario or "", "status": f"failed: {f.phase}"})
    return rows


def summarize(bundle: Bundle, matrix: Matrix) -> list[dict[str, Any]]:
    """summary.csv's rows of a bundle's one analysis, for scripts and tests that read a bundle's figures."""
    return summary_rows(analyze(bundle, matrix))


def write_summary_csv(a: Analysis) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, restval="")
    writer.writeheader()
    writer.writerows(summary_rows(a))
    path = a.root / "summary.csv"
    atomic_write(path, buffer.getvalue())
    return path
