"""Small result bundles with known numbers, written through the real bundle writer and validated like real ones."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtests import recorder
from scripts import bundle
from servers.matrix import load

T0 = 1_795_000_000.0


def histogram_of(values_us: list[int]) -> dict[str, Any]:
    r = recorder.Recorder()
    r.open()
    for us in values_us:
        r.success(us / 1_000_000)
    return recorder.latency_summary(r.flush())


def machine(**overrides: Any) -> dict[str, Any]:
    return {
        "machine_id": "abc12345", "cpu_model": "Synthetic CPU", "logical_cpus": 2, "physical_cores": 2,
        "cpu_affinity": [0, 1], "cpu_max_mhz": None, "memory_bytes": 8 * 2**30, "kernel": "6.1.0", "os": "Debian 12",
        "python": "3.12.1", "container": True, "docker_version": "20.10.24", "image_id": "sha256:0123",
        **overrides,
    }  # fmt: skip


def make_bundle(
    root: Path,
    points: dict[tuple[str, str, float], list[float]],
    latency_us: dict[tuple[str, str, float], list[int]] | None = None,
    run_id: str = "20260101T000000Z-abc12345",
    ceiling: float | None = 30_000.0,
    client_bound: set[tuple[str, str]] = frozenset(),
    server_cores: float = 1.0,
    versions: dict[str, str] | None = None,
    machine_overrides: dict[str, Any] | None = None,
) -> Path:
    """points: (cell key, scenario, offered rps or 0) -> RPS of each repeat. Latency defaults to 1..1000 µs."""
    matrix = load()
    root = root / run_id
    keys = sorted({k for k, _, _ in points})
    scenarios = sorted({s for _, s, _ in points})
    rates = sorted({q for _, _, q in points})
    manifest = {
        "schema_version": 1, "kind": "manifest", "run_id": run_id, "status": "complete", "started": T0,
        "ended": T0 + 600,
        "config": {"preset": None, "cells": keys, "scenarios": scenarios, "repeats": 2, "duration": 5.0, "warmup": 1.0,
                   "users": 64, "processes": 1, "rates": rates, "client": "lean", "server_cpus": [0],
                   "load_cpus": [1], "port": 8000, "calibrate": ceiling is not None},
        "machine": machine(**(machine_overrides or {})),
        "versions": versions or {"uvicorn": "0.54.0", "granian": "2.8.7", "locust": "2.47.0"},
        "lab_commit": "0" * 40, "skipped": [], "failures": [],
    }  # fmt: skip
    bundle.write_record(root / "manifest.json", manifest)
    for (key, scenario, rate), series in points.items():
        cell = matrix.cell_from_key(key)
        latency = histogram_of((latency_us or {}).get((key, scenario, rate), list(range(1, 1001))))
        for n, rps in enumerate(series, start=1):
            record = {
                "schema_version": 1, "kind": "repeat", "run_id": run_id, "key": key, "cell": asdict(cell),
                "scenario": scenario, "params": {}, "repeat": n, "client": "LeanUser",
                "model": "open" if rate else "closed", "users": 64, "offered_rps": rate or None,
                "rate_shortfall": (rps < 0.95 * rate) if rate else None,
                "window": {"start": T0 + n * 10, "end": T0 + n * 10 + 5, "seconds": 5.0},
                "requests": int(rps * 5), "ok": int(rps * 5), "errors": {}, "rps": float(rps), "latency": latency,
                "processes": 1, "per_process_ok": [int(rps * 5)],
                "load_generator": {"cpus": [1], "processes": 1, "client": "lean", "cpu_seconds": 2.5,
                                   "capacity_utilization": 0.5, "cpu_busy": 0.5, "worker_utilization": [0.5]},
                "client_bound": (key, scenario) in client_bound, "client_bound_reason": "synthetic",
                "server": {"cpus": [0], "startup_seconds": 0.25, "cpu_seconds": 5.0 * server_cores,
                           "cpu_cores": server_cores, "rss_peak_bytes": 50 * 2**20, "processes": 1},
                "locust_exit_code": 0,
            }  # fmt: skip
            bundle.write_record(bundle.repeat_path(root, key, scenario, n, rate), record)
    if ceiling is not None:
        generator = {"cpus": [1], "processes": 1, "client": "lean", "cpu_seconds": 5.0, "capacity_utilization": 0.99,
                     "cpu_busy": 0.99, "worker_utilization": [0.99]}  # fmt: skip
        figures = {"rps": ceiling, "rps_per_core": ceiling, "errors": {}, "p50_us": 1000, "p99_us": 3000,
                   "client_bound": True, "load_generator": generator}  # fmt: skip
        calibration = {
            "schema_version": 1, "kind": "calibration", "cell": "granian-uvloop-hyper-w1-raw", "scenario": "plaintext",
            "server_cpus": [0], "load_cpus": [1], "users": 64, "duration": 5.0, "started": T0, "versions": {},
            "lean": figures, "stock": {**figures, "rps": ceiling / 5, "rps_per_core": ceiling / 5}, "wrk": None,
            "ratios": {"lean_vs_stock_per_core": 5.0, "lean_vs_wrk": None}, "targets": {}, "ceiling_rps": ceiling,
        }  # fmt: skip
        bundle.write_record(root / "calibration.json", calibration)
    return root
