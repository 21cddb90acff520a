"""Small result bundles with known numbers, written through the real bundle writer and validated like real ones."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from lab import bundle
from lab.config import RunConfig
from loadtests import recorder
from loadtests.load import LoadGenerator, LoadResult, Window
from servers.matrix import load

T0 = 1_795_000_000.0


def histogram_of(values_us: list[int]) -> Any:
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
    config = RunConfig(
        preset=None, cells=keys, scenarios=scenarios, repeats=2, duration=5.0, warmup=1.0, users=64, rates=rates,
        client="lean", server_cpus=[0], load_cpus=[1], load_workers=1, port=8000, calibrate=ceiling is not None,
        allow_shared_cpus=False, target_agent=None, locust_master=None,
    )  # fmt: skip
    manifest = bundle.Manifest(
        schema_version=bundle.SCHEMA_VERSION, kind="manifest", run_id=run_id, status="complete", started=T0,
        ended=T0 + 600, config=config, machine=bundle.Machine(**machine(**(machine_overrides or {}))),
        versions=versions or {"uvicorn": "0.54.0", "granian": "2.8.7", "locust": "2.47.0"},
        lab_commit="0" * 40, skipped=[], failures=[],
    )  # fmt: skip
    bundle.write_record(root / "manifest.json", manifest)
    generator = LoadGenerator(cpus=[1], processes=1, client="lean", cpu_seconds=2.5, capacity_utilization=0.5,
                              cpu_busy=0.5, worker_utilization=[0.5])  # fmt: skip
    for (key, scenario, rate), series in points.items():
        cell = matrix.cell_from_key(key)
        latency = histogram_of((latency_us or {}).get((key, scenario, rate), list(range(1, 1001))))
        for n, rps in enumerate(series, start=1):
            result = LoadResult(
                scenario=scenario, params={}, client="LeanUser", model="open" if rate else "closed", users=64,
                offered_rps=float(rate) or None, rate_shortfall=(rps < 0.95 * rate) if rate else None,
                window=Window(start=T0 + n * 10, end=T0 + n * 10 + 5, seconds=5.0), requests=int(rps * 5),
                ok=int(rps * 5), errors={}, rps=float(rps), latency=latency, processes=1, per_process_ok=[int(rps * 5)],
                load_generator=generator, client_bound=(key, scenario) in client_bound, client_bound_reason="synthetic",
            )  # fmt: skip
            record = bundle.Repeat(
                schema_version=bundle.SCHEMA_VERSION, kind="repeat", run_id=run_id, key=key,
                cell=bundle.CellInfo(**asdict(cell)), scenario=scenario, offered_rps=float(rate) or None, repeat=n,
                load=result,
                server=bundle.ServerFigures(cpus=[0], startup_seconds=0.25, cpu_seconds=5.0 * server_cores,
                                            cpu_cores=server_cores, rss_peak_bytes=50 * 2**20, processes=1),
            )  # fmt: skip
            bundle.write_record(bundle.repeat_path(root, key, scenario, n, rate), record)
    if ceiling is not None:
        figures = bundle.ClientFigures(rps=ceiling, rps_per_core=ceiling, errors={}, p50_us=1000, p99_us=3000,
                                       client_bound=True)  # fmt: skip
        calibration = bundle.Calibration(
            schema_version=bundle.SCHEMA_VERSION, kind="calibration", cell="granian-uvloop-hyper-w1-raw",
            scenario="plaintext", server_cpus=[0], load_cpus=[1], users=64, duration=5.0, started=T0, versions={},
            lab_client=figures, referee=None, lab_vs_referee=None, ceiling_rps=ceiling,
        )  # fmt: skip
        bundle.write_record(root / "calibration.json", calibration)
    return root
