"""The load generator's ceiling, measured on the path every result takes: the matrix's calibration cell started
through the target backend, loaded through the load backend, with wrk (the referee) on the same load CPUs."""

from __future__ import annotations

import time

from lab import bundle
from lab.bundle import Calibration, ClientFigures
from loadtests.load import Load, LoadBackend, LoadResult
from servers.matrix import load as load_matrix
from servers.target import TargetBackend


def client_figures(result: LoadResult) -> ClientFigures:
    cores = result.load_generator.cpu_seconds / result.window.seconds if result.window.seconds > 0 else 0.0
    return ClientFigures(
        rps=result.rps,
        rps_per_core=round(result.rps / cores, 1) if cores > 0 else 0.0,
        errors=result.errors,
        p50_us=result.latency.percentiles_us.get("p50"),
        p99_us=result.latency.percentiles_us.get("p99"),
        client_bound=result.client_bound,
    )


def calibrate(targets: TargetBackend, loads: LoadBackend, users: int, duration: float, port: int) -> Calibration:
    cell, scenario = load_matrix().calibration
    started = time.time()
    with targets.serve(cell, port) as server:
        spec = Load(target=server.url, scenario=scenario, users=users, duration=duration)
        lab_client = loads.run(spec)
        referee = loads.referee(spec)
        versions = server.report.versions
    return Calibration(
        schema_version=bundle.SCHEMA_VERSION,
        kind="calibration",
        cell=cell.key,
        scenario=scenario,
        server_cpus=list(targets.cpus),
        load_cpus=list(loads.cpus),
        users=users,
        duration=duration,
        started=started,
        versions=versions,
        lab_client=client_figures(lab_client),
        referee=referee,
        lab_vs_referee=round(lab_client.rps / referee.rps, 3) if referee and referee.rps else None,
        ceiling_rps=lab_client.rps,
    )
