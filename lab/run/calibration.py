"""The load generator's ceiling, measured on the path every result takes.

The matrix's calibration cell (its fastest) is started through the run's target backend and loaded through the
run's load backend, with the run's workers, CPUs, connections, warm-up and window; for each scenario of the run:
the referee (wrk), then CALIBRATION_REPEATS repeats, each with both sides' CPU per answer. The ceiling is the lab
client's RPS when the client was the limit; otherwise (the server was) it is projected from the client's CPU per
answer: 1e6 / client_us x the cores the workers can use, and labelled a projection.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Literal

from lab import bundle
from lab.analysis.points import median_of
from lab.bundle import Calibration, CalibrationPoint, Repeat
from lab.config import RunConfig
from lab.measure import referee as referee_window
from lab.measure import repeat as repeat_window
from lab.measure.instrument import Instrument
from lab.measure.referee import Refereed
from lab.measure.window import Work
from lab.verdict import worst
from loadtests.load import LoadBackend, RefereeResult
from servers.matrix import Matrix
from servers.target import TargetBackend

CALIBRATION_REPEATS = 3


def calibrate(
    config: RunConfig,
    matrix: Matrix,
    targets: TargetBackend,
    loads: LoadBackend,
    instrument: Instrument,
    line: Callable[[str], None] = print,
) -> Calibration | None:
    assert matrix.calibration is not None
    cell, _ = matrix.calibration
    scenarios = [s for s in config.scenarios if matrix.supports(cell, s)]
    if not scenarios:
        return None
    started = time.time()
    points = []
    with targets.serve(cell, config.port) as server:
        versions = server.report.versions
        for scenario in scenarios:
            if config.referee_seconds:
                referee = referee_window.measure(instrument, server, scenario)
            else:
                referee = Refereed(None, "not run")
            repeats: list[Repeat] = [
                repeat_window.measure(
                    instrument, server, cell, Work(scenario, 0.0, n, config.warmup, config.duration), referee
                )
                for n in range(1, CALIBRATION_REPEATS + 1)
            ]
            point = summarize(scenario, [r for r in repeats if r.ok], referee.wrk, config, loads)
            if point is not None:
                points.append(point)
                line(
                    f"calibration {scenario}: lab client {point.lab_rps:,.0f} RPS"
                    + (f" = {point.lab_vs_referee:.2f}× wrk" if point.lab_vs_referee else "")
                    + f", {point.client_us} µs of client CPU per answer, limit {point.limit}; "
                    f"ceiling {point.ceiling_rps:,.0f} RPS ({point.ceiling})"
                )
    return Calibration(
        schema_version=bundle.SCHEMA_VERSION,
        kind="calibration",
        cell=cell.key,
        server_cpus=list(targets.cpus),
        load_cpus=list(loads.cpus),
        load_workers=loads.workers,
        users=config.users,
        duration=config.duration,
        warmup=config.warmup,
        started=started,
        versions=versions,
        points=points,
    )


def summarize(
    scenario: str, ok: list[Repeat], referee: RefereeResult | None, config: RunConfig, loads: LoadBackend
) -> CalibrationPoint | None:
    if not ok:
        return None
    rps = [r.load.rps for r in ok if r.load]
    lab = statistics.median(rps)
    client_us = median_of([r.cost.client_us if r.cost else None for r in ok])
    limit = worst([r.verdict.limit for r in ok if r.verdict])
    cores = min(loads.workers, len(loads.cpus))
    how: Literal["measured", "projected"]
    if limit == "client" or not client_us:
        ceiling, how = lab, "measured"
    else:
        ceiling, how = 1e6 / client_us * cores, "projected"
    return CalibrationPoint(
        scenario=scenario,
        rps=rps,
        lab_rps=round(lab, 1),
        referee=referee,
        lab_vs_referee=round(lab / referee.rps, 3) if referee and referee.rps else None,
        client_us=client_us,
        server_cpus_us=median_of([r.cost.server_cpus_us if r.cost else None for r in ok]),
        limit=limit,
        ceiling_rps=round(ceiling, 1),
        ceiling=how,
    )
