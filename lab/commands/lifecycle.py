"""python -m lab lifecycle: a run's stop phase alone (the run options' cells, port, CPUs, target host, --stops,
--graceful), or with --restart each cell restarted under load instead, on this machine or through the target agent;
its records, lifecycle.md (or restarts.md) and the timeline chart in --out (a folder of stop records, not a whole
bundle)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from core.errors import say
from core.host import LOOPBACK, check_port_free, machine_cpus
from lab import bundle
from lab import config as options
from lab.config import RunConfig
from lab.lifecycle import stops
from lab.report.stops import outcome_line, restart_line, restart_table, table, write_outputs, write_restart_outputs
from lab.run.backends import open_targets
from loadtests.scenarios import Target
from servers.matrix import Cell, Matrix
from servers.target import TargetBackend

DEFAULT_STOPS = 5  # without --stops: enough stops per cell to see if an outcome is stable


def lifecycle_main(args: argparse.Namespace, matrix: Matrix) -> int:
    """The command: its configuration from the run options, its target backend (lab/run/backends.py), its tests."""
    config = options.from_args(args, matrix)
    count = DEFAULT_STOPS if args.stops is None else config.stops  # --stops 0 is a count too: none
    if not count:
        say(f"--stops 0: no {'restarts' if config.restart else 'stops'} asked for; nothing started, nothing written")
        return 0
    out = args.out or args.results / f"lifecycle-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    if not config.target_agent:
        check_port_free(LOOPBACK, config.port, "server port")
    os.sched_setaffinity(0, set(config.load_cpus) & set(machine_cpus()) or set(machine_cpus()))
    targets = open_targets(config, matrix, out / "logs")
    try:
        return tests(config, matrix, targets, count, out)
    finally:
        targets.release()


def tests(config: RunConfig, matrix: Matrix, targets: TargetBackend, count: int, out: Path) -> int:
    """Each cell's server stopped (or restarted) under load `count` times; 1 when a test failed."""
    cells = stops.http1_cells(config.cells, matrix)
    if skipped := [c.key for c in config.cells if c not in cells]:
        say(f"not stopped (the stop test speaks HTTP/1.1; their servers are, on their HTTP/1.1 cells): {skipped}")
    kind = "restart" if config.restart else "stop"
    if config.restart:
        cells = [stops.restart_cell(c, matrix) for c in cells]
        for cell in cells:  # a cell with more workers than the preset's: refused before any starts, as every input is
            matrix.valid(cell)
    failures: list[str] = []

    def failed(cell: Cell, number: int, exc: Exception) -> None:
        failures.append(cell.key)
        say(f"FAILED {cell.key} {kind} {number}: {type(exc).__name__}: {exc}")

    bench = stops.Bench(targets, matrix, Target(config.target_host, config.port), out.name, config.graceful)
    test, plan, path, line, page, rows = KINDS[kind]
    say(f"{kind}s under load: {len(cells)} cells x {count}, {plan.describe()}; results in {out}")
    records = stops.each(
        kind, cells, count, lambda cell, n: test(bench, cell, n),
        lambda cell, n: path(out, cell.key, config.graceful, n), lambda record: say(line(record)), failed,
    )  # fmt: skip
    if records:
        page(out, records)
        print(*rows(records), sep="\n")
    return 1 if failures else 0


# per kind of test: how one is measured, its plan, where its record goes, its line, its page and its table
KINDS: dict[str, tuple[Any, ...]] = {
    "stop": (stops.stop_once, stops.StopPlan(), bundle.stop_path, outcome_line, write_outputs, table),
    "restart": (stops.restart_once, stops.RestartPlan(), bundle.restart_path, restart_line, write_restart_outputs,
                restart_table),
}  # fmt: skip
