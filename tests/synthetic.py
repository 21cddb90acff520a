"""Small result bundles with known numbers, written through the real bundle writer and validated like real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab import bundle
from lab.config import RunConfig
from lab.verdict import Verdict
from loadtests import recorder
from loadtests.load import Latency, LoadGenerator, LoadResult, RefereeResult, Window
from servers.matrix import load

T0 = 1_795_000_000.0


def histogram_of(values_us: list[int]) -> Latency:
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


def config(keys: list[str], scenarios: list[str], **overrides: Any) -> RunConfig:
    fields: dict[str, Any] = {
        "preset": None, "cells": keys, "scenarios": scenarios, "repeats": 3, "duration": 5.0, "warmup": 1.0,
        "users": 64, "client": "lean", "referee_seconds": 2.0, "rates": [], "sweep_seconds": 2.0,
        "arrivals": "poisson", "max_connections": 256, "budget_seconds": 0.0, "max_repeats": 6, "server_cpus": [0],
        "load_cpus": [1], "load_workers": 1, "port": 8000, "calibrate": True, "allow_shared_cpus": False,
        "target_agent": None, "locust_master": None,
    }  # fmt: skip
    return RunConfig(**{**fields, **overrides})


def referee(rps: float) -> RefereeResult:
    return RefereeResult(
        rps=rps, non_2xx=0, socket_errors=0, threads=1, seconds=2.0, cpu_utilization=0.5, cpu_busy={"1": 0.5},
        argv=["wrk"],
    )  # fmt: skip


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
    referees: dict[tuple[str, str], float | list[float | None]] | None = None,
    shortfall: set[tuple[str, str, float]] = frozenset(),
    failed: set[tuple[str, str, float, int]] = frozenset(),
    speed: tuple[float, float] | None = (2_000_000.0, 2_000_000.0),
    samples: dict[tuple[str, str], list[list[int]]] | None = None,
    referee_samples: dict[tuple[str, str], list[int] | list[list[int]]] | None = None,
    unsteady: set[tuple[str, str, float, int]] = frozenset(),
    config_overrides: dict[str, Any] | None = None,
    together: dict[str, list[dict[str, float]]] | None = None,
) -> Path:
    """points: (cell key, scenario, offered rps or 0) -> RPS of each repeat. Latency defaults to 1..1000 µs.
    client_bound: (key, scenario) whose repeats' CPU verdict is `client`; referees: (key, scenario) -> wrk's RPS after
    the first repeat, or per round (None: no wrk in that round); shortfall: open points that did not serve their rate;
    failed: (key, scenario, rate, repeat) that failed; samples: (key, scenario) -> the speedometer's samples of each
    closed repeat; referee_samples: those of wrk's run (or per round, as referees); unsteady: (key, scenario, rate,
    repeat) flagged unsteady; config_overrides: the run's configuration (e.g. shared CPUs); together: scenario ->
    each side-by-side round's RPS per cell key (default: each closed scenario's cells in one group, round r's RPS
    their r-th repeat's; {} for none)."""
    matrix = load()
    root = root / run_id
    keys = sorted({k for k, _, _ in points}, key=lambda k: [c.key for c in matrix.all_cells()].index(k))
    scenarios = sorted({s for _, s, _ in points})
    sweep = {}
    for scenario in scenarios:
        rates = sorted({q for _, s, q in points if s == scenario and q})
        if rates:
            sweep[scenario] = bundle.SweepRates(common=rates, fast=[], chosen_from="synthetic")
    manifest = bundle.Manifest(
        schema_version=bundle.SCHEMA_VERSION, kind="manifest", run_id=run_id, status="complete", started=T0,
        ended=T0 + 600, config=config(keys, scenarios, calibrate=ceiling is not None, **(config_overrides or {})),
        machine=bundle.Machine(**machine(**(machine_overrides or {}))),
        versions=versions or {"uvicorn": "0.54.0", "granian": "2.8.7", "locust": "2.47.0"},
        lab_commit="0" * 40, skipped=[], failures=[],
        parts=[bundle.Part(started=T0, ended=T0 + 600, status="complete", machine_id="abc12345", container=True,
                           uid=1000, wiring="on this machine", note=None)],
        rounds=[keys, list(reversed(keys)), keys], sweep=sweep, extra_rule="none",
        speed=bundle.Speed(
            workload="synthetic", server_ops=speed[0], load_ops=speed[1], server_samples=[speed[0]],
            load_samples=[speed[1]],
        )
        if speed
        else None,
    )  # fmt: skip
    bundle.write_record(root / "manifest.json", manifest)
    generator = LoadGenerator(
        cpus=[1], processes=1, client="LeanUser", cpu_seconds=2.5, worker_utilization=[0.5], cpu_busy={"1": 0.5},
        cpu_steal={"1": 0.0}, cpu_irq={"1": 0.05}, master_utilization=None,
    )  # fmt: skip
    for (key, scenario, rate), series in points.items():
        cell = matrix.cell_from_key(key)
        latency = histogram_of((latency_us or {}).get((key, scenario, rate), list(range(1, 1001))))
        given = (referees or {}).get((key, scenario))
        wrk_rounds = given if isinstance(given, list) else [given]
        given_speed = (referee_samples or {}).get((key, scenario), [])
        wrk_speeds = given_speed if given_speed and isinstance(given_speed[0], list) else [given_speed]
        for n, rps in enumerate(series, start=1):
            short = (key, scenario, rate) in shortfall
            result = LoadResult(
                scenario=scenario, params={}, client="LeanUser", model="open" if rate else "closed", users=64,
                offered_rps=float(rate) or None, arrivals="poisson" if rate else None,
                rate_shortfall=short if rate else None,
                window=Window(start=T0 + n * 10, end=T0 + n * 10 + 5, seconds=5.0), requests=int(rps * 5),
                ok=int(rps * 5), errors={}, rps=float(rps), per_second=[int(rps)] * 5, latency=latency,
                send_lateness=histogram_of([50] * 99 + [400]) if rate else None, scheduled=int(rate * 5),
                owed=0, peak_connections=64, processes=1, per_process_ok=[int(rps * 5)], load_generator=generator,
            )  # fmt: skip
            limit = "client" if (key, scenario) in client_bound else ("offered" if rate and not short else "server")
            ok = (key, scenario, rate, n) not in failed
            wrk_rps = None if rate or n > len(wrk_rounds) else wrk_rounds[n - 1]
            record = bundle.Repeat(
                schema_version=bundle.SCHEMA_VERSION, kind="repeat", run_id=run_id, key=key,
                cell=cell, scenario=scenario, offered_rps=float(rate) or None, repeat=n,
                status="ok" if ok else "failed", failure=None if ok else "synthetic failure", load=result,
                server=bundle.ServerFigures(
                    cpus=[0], startup_seconds=0.25, cpu_seconds=5.0 * server_cores, cpu_cores=server_cores,
                    rss_peak_bytes=50 * 2**20, processes=1, cpus_busy_seconds=5.0 * server_cores,
                    cpus_busy={"0": server_cores}, cpus_steal={"0": 0.0}, cpus_irq={"0": 0.1},
                ),
                referee=None if wrk_rps is None else referee(wrk_rps),
                referee_cost=None,
                verdict=Verdict(limit=limit, reason="synthetic", lab_vs_referee=None, busiest_load_cpu=0.5,
                                busiest_worker=0.5, server_cpus_busy=server_cores),
                cost=bundle.Cost(server_us=round(1e6 * server_cores / rps, 2),
                                 server_cpus_us=round(1e6 * server_cores / rps, 2), client_us=round(5e5 / rps, 2)),
                conditions=bundle.Conditions(
                    steal=0.0, other_server=0.0, other_load=0.0, unsteady=(key, scenario, rate, n) in unsteady,
                    disturbed=False, note="quiet",
                    speed_samples=[] if rate else (samples or {}).get((key, scenario), [[]] * n)[n - 1],
                    referee_speed=wrk_speeds[n - 1] if n <= len(wrk_speeds) and not rate else [],
                ),
                attempt=1, earlier=[],
            )  # fmt: skip
            bundle.write_record(bundle.repeat_path(root, key, scenario, n, rate), record)
    if together is None:
        together = {
            s: [{k: series[n] for (k, sc, rate), series in points.items() if sc == s and not rate and n < len(series)}
                for n in range(max(len(v) for (_, sc, r), v in points.items() if sc == s and not r))]
            for s in {s for _, s, r in points if not r}
        }  # fmt: skip
    for scenario, rounds in together.items():
        for n, rates in enumerate(rounds, start=1):
            if len(rates) > 1:
                write_group(root, run_id, scenario, n, rates, generator)
    if ceiling is not None:
        point = bundle.CalibrationPoint(
            scenario="plaintext", rps=[ceiling] * 3, lab_rps=ceiling, referee=referee(ceiling * 1.02),
            lab_vs_referee=round(1 / 1.02, 3), client_us=20.0, server_cpus_us=30.0, limit="client",
            ceiling_rps=ceiling, ceiling="measured",
        )  # fmt: skip
        calibration = bundle.Calibration(
            schema_version=bundle.SCHEMA_VERSION, kind="calibration", cell="granian-uvloop-hyper-w1-raw",
            server_cpus=[0], load_cpus=[1], load_workers=1, users=64, duration=5.0, warmup=1.0, started=T0,
            versions={}, points=[point],
        )  # fmt: skip
        bundle.write_record(root / "calibration.json", calibration)
    return root


def add_stop(root: Path, key: str, number: int, exit_code: int = 0, lost_before: int = 0, lost_after: int = 5) -> None:
    """One stop under load in the bundle at `root`: 1000 scheduled at 500/s, `lost_before` of those due before
    SIGTERM and `lost_after` of those due after it closed, the rest answered; the server exits with `exit_code`."""
    from loadtests.stopping import OUTCOMES, StopLoad
    from servers.target import LifespanNote, Termination

    run_id = root.name
    cell = load().cell_from_key(key)
    none = dict.fromkeys(OUTCOMES, 0)
    ok = 1000 - lost_before - lost_after
    load_ = StopLoad(
        rate=500.0, long_share=0.1, long_ms=500, idle=2, before=1.0, after=1.0, scheduled=1000,
        outcomes={**none, "ok": ok, "closed": lost_before + lost_after}, short={**none, "ok": ok},
        long={**none, "closed": lost_before + lost_after}, in_flight={**none, "ok": 3, "closed": lost_before},
        in_flight_ms=[1.0, 2.0, 3.0], due_after={**none, "ok": 500 - lost_after, "closed": lost_after},
        last_answer=0.5, idle_closed=[0.0, 0.0], timeline_start=-1.0, timeline={"ok": [ok]}, max_late=0.001,
        peak_connections=10,
    )  # fmt: skip
    notes = [LifespanNote(event=e, app=cell.app, pid=1, time=T0 + i)
             for i, e in enumerate(("startup-complete", "shutdown-begin", "shutdown-complete"))]  # fmt: skip
    server = Termination(
        graceful="lab", graceful_seconds=5.0, graceful_flag=[], signal_at=T0, exit_at=T0 + 0.6, exit_code=exit_code,
        killed=False, kill_after=12.0, leftovers=0, still_listening=False, lifespan=notes,
    )  # fmt: skip
    record = bundle.StopTest(
        schema_version=bundle.SCHEMA_VERSION, kind="stop", run_id=run_id, key=key, cell=cell, number=number,
        graceful="lab", capacity=2000.0, fraction=0.25, load=load_, server=server,
    )  # fmt: skip
    bundle.write_record(bundle.stop_path(root, key, "lab", number), record)


def write_group(root: Path, run_id: str, scenario: str, n: int, rates: dict[str, float], generator: Any) -> None:
    """One side-by-side window of these cells (key -> RPS in the window), every server saturated."""
    from loadtests.load import GroupResult, SideResult

    matrix = load()
    cells = [matrix.cell_from_key(k) for k in rates]
    latency = histogram_of(list(range(1, 101)))
    sides = [SideResult(target=f"http://127.0.0.1:{8000 + i}", requests=int(r * 5), ok=int(r * 5), errors={},
                        latency=latency, buckets=[int(r)] * 5) for i, r in enumerate(rates.values())]  # fmt: skip
    total = sum(rates.values())
    result = LoadResult(
        scenario=scenario, params={}, client="LeanUser", model="closed", users=64, offered_rps=None, arrivals=None,
        rate_shortfall=None, window=Window(start=T0 + 100 * n, end=T0 + 100 * n + 5, seconds=5.0),
        requests=int(total * 5), ok=int(total * 5), errors={}, rps=total, per_second=[int(total)] * 5,
        latency=latency, send_lateness=None, scheduled=0, owed=0, peak_connections=64 * len(rates), processes=1,
        per_process_ok=[int(total * 5)], load_generator=generator,
        group=GroupResult(mode="together", bucket_seconds=1.0, settle_seconds=0.0, first=0, sides=sides),
    )  # fmt: skip
    share = 1.0 / len(rates)
    servers = [
        bundle.ServerFigures(cpus=[0], startup_seconds=0.25, cpu_seconds=5.0 * share, cpu_cores=share,
                             rss_peak_bytes=50 * 2**20, processes=1, cpus_busy_seconds=5.0, cpus_busy={"0": 1.0},
                             cpus_steal={"0": 0.0}, cpus_irq={"0": 0.1})
        for _ in rates
    ]  # fmt: skip
    key = f"{cells[0].app}-w1"
    record = bundle.GroupWindow(
        schema_version=bundle.SCHEMA_VERSION, kind="group", run_id=run_id, key=key, cells=cells, scenario=scenario,
        round=n, started=[c.key for c in cells], status="ok", failure=None, load=result, servers=servers,
        conditions=None,
    )  # fmt: skip
    bundle.write_record(bundle.group_path(root, key, scenario, n), record)
