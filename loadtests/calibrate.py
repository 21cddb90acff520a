"""The load generator's own ceiling on this machine: the lab client, stock Locust and wrk on the fastest cell.

All three load the matrix's calibration cell (server pinned to the server CPUs) from the load-generator CPUs in one
run, so their ratios are comparable even on a noisy machine. Charts draw the lab client's figure as its ceiling.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from loadtests.run import Load, machine_cpus, run, wrk
from servers.matrix import load as load_matrix
from servers.process import serve

# Stock FastHttpUser is measured with fewer seconds: it only serves as the baseline of a ratio.
TARGETS = {"lean_vs_stock_per_core": 3.0, "lean_vs_wrk": 0.45}


def per_core(result: dict[str, Any]) -> float:
    """Requests/s per load-generator core actually used (CPU seconds / window seconds)."""
    cores = result["load_generator"]["cpu_seconds"] / result["window"]["seconds"]
    return result["rps"] / cores if cores > 0 else 0.0


def summary(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "rps": result["rps"],
        "rps_per_core": round(per_core(result), 1),
        "errors": result["errors"],
        "p50_us": result["latency"]["percentiles_us"].get("p50"),
        "p99_us": result["latency"]["percentiles_us"].get("p99"),
        "client_bound": result["client_bound"],
        "load_generator": result["load_generator"],
    }


def calibrate(
    server_cpus: tuple[int, ...] | None = None,
    load_cpus: tuple[int, ...] | None = None,
    users: int = 64,
    duration: float = 10.0,
    workdir: Path | None = None,
) -> dict[str, Any]:
    matrix = load_matrix()
    cell, scenario = matrix.calibration
    cpus = machine_cpus()
    server_cpus = server_cpus or cpus[:1]
    load_cpus = load_cpus or (cpus[1:] or cpus[:1])
    workdir = Path(workdir or tempfile.mkdtemp(prefix="lab-calibrate-"))
    started = time.time()
    with serve(cell, workdir, cpus=server_cpus) as server:
        common = {"target": server.url, "scenario": scenario, "users": users, "cpus": load_cpus}
        lean = run(Load(**common, duration=duration, client="lean", processes=len(load_cpus)), workdir / "lean")
        stock = run(Load(**common, duration=duration, client="stock", processes=len(load_cpus)), workdir / "stock")
        reference = wrk(Load(**common, duration=duration))
        server_versions = server.report["versions"]
    ratios = {"lean_vs_stock_per_core": round(per_core(lean) / per_core(stock), 3) if per_core(stock) else None}
    ratios["lean_vs_wrk"] = round(lean["rps"] / reference["rps"], 3) if reference else None
    return {
        "cell": cell.key,
        "scenario": scenario,
        "server_cpus": list(server_cpus),
        "load_cpus": list(load_cpus),
        "users": users,
        "duration": duration,
        "started": started,
        "versions": server_versions,
        "lean": summary(lean),
        "stock": summary(stock),
        "wrk": reference,
        "ratios": ratios,
        "targets": TARGETS,
        "ceiling_rps": lean["rps"],
    }
