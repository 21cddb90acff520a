"""summary.csv: one row per point of the bundle's one analysis (lab/analysis/analyze.py), and one per failure, every
figure as measured (the median of the repeats and their range; no fitted value)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from core.host import atomic_write
from lab.analysis.analyze import Analysis, analyze
from lab.analysis.figures import Figures
from lab.bundle import Bundle
from servers.matrix import Matrix


@dataclass(frozen=True)
class Row:
    """One row of summary.csv; its fields, in order, are the file's columns."""

    key: str
    server: str
    loop: str
    http: str
    workers: int
    app: str
    scenario: str
    offered_rps: float | None = None
    status: str = "ok"
    repeats: int | None = None
    repeats_failed: int | None = None
    rps_median: float | None = None
    rps_min: float | None = None
    rps_max: float | None = None
    limit: str | None = None
    referee_rps: float | None = None
    lab_vs_referee: float | None = None
    limit_reason: str | None = None
    referee_server_cpus_us_per_req: float | None = None
    p50_us: int | None = None
    p90_us: int | None = None
    p99_us: int | None = None
    p99_9_us: int | None = None
    max_us: int | None = None
    send_late_p99_us: int | None = None
    errors: int | None = None
    rate_shortfall: bool | None = None
    server_us_per_req: float | None = None
    server_cpus_us_per_req: float | None = None
    client_us_per_req: float | None = None
    projected_rps: float | None = None
    server_cpu_cores: float | None = None
    server_rss_mb: float | None = None
    startup_s: float | None = None
    busiest_load_cpu: float | None = None
    unsteady: int | None = None
    disturbed: int | None = None
    label: str | None = None  # the cell's one name
    limit_shown: str | None = None  # the limit as the report states it (`shared` where the sides shared CPUs)
    p99_ci_low_us: float | None = None  # the p99's 95% interval at equal load
    p99_ci_high_us: float | None = None


SUMMARY_FIELDS = [f.name for f in fields(Row)]


def summary_row(f: Figures) -> Row:
    c = f.cell
    head = {"key": f.key, "server": c.server, "loop": c.loop, "http": c.http, "workers": c.workers, "app": c.app,
            "scenario": f.scenario, "offered_rps": f.offered or None, "repeats": f.repeats, "repeats_failed": f.failed,
            "label": f.label}  # fmt: skip
    if not f.ok or f.latency is None:
        return Row(**head, status="failed: every repeat")
    latency = f.latency.percentiles_us
    return Row(
        **head,
        rps_median=f.median,
        rps_min=round(f.measured.low, 1) if f.measured else None,
        rps_max=round(f.measured.high, 1) if f.measured else None,
        limit=f.limit, referee_rps=f.referee_rps,
        lab_vs_referee=round(f.referee_ratio, 3) if f.referee_ratio is not None else None,
        limit_reason=f.limit_reason, referee_server_cpus_us_per_req=f.referee_server_cpus_us,
        p50_us=latency.get("p50"), p90_us=latency.get("p90"), p99_us=latency.get("p99"),
        p99_9_us=latency.get("p99.9"), max_us=f.latency.max_us, send_late_p99_us=f.late_p99_us, errors=f.errors,
        rate_shortfall=f.rate_shortfall if f.offered else None, server_us_per_req=f.server_us,
        server_cpus_us_per_req=f.server_cpus_us, client_us_per_req=f.client_us, projected_rps=f.projected_rps,
        server_cpu_cores=f.server_cpu_cores, server_rss_mb=f.server_rss_mb, startup_s=f.startup_s,
        busiest_load_cpu=f.busiest_load_cpu, unsteady=f.unsteady, disturbed=f.disturbed, limit_shown=f.shown_limit,
        p99_ci_low_us=f.p99_interval.low if f.p99_interval else None,
        p99_ci_high_us=f.p99_interval.high if f.p99_interval else None,
    )  # fmt: skip


def summary_rows(a: Analysis) -> list[Row]:
    """One row per point, then one per failure."""
    rows = [summary_row(f) for f in a.points]
    for f in a.failures:
        c = f.cell
        rows.append(Row(key=f.key, server=c.server, loop=c.loop, http=c.http, workers=c.workers, app=c.app,
                        scenario=f.scenario or "", status=f"failed: {f.phase}"))  # fmt: skip
    return rows


def summarize(bundle: Bundle, matrix: Matrix) -> list[Row]:
    """summary.csv's rows of a bundle's one analysis, for scripts and tests that read a bundle's figures."""
    return summary_rows(analyze(bundle, matrix))


def write_summary_csv(a: Analysis) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, restval="")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in asdict(row).items()} for row in summary_rows(a))
    path = a.root / "summary.csv"
    atomic_write(path, buffer.getvalue())
    return path
