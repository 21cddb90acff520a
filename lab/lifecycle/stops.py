"""Stopping and restarting under load: one cell's server started fresh, loaded in the open model at a stated share
of its capacity with short and long requests in flight and idle keep-alive connections open, and sent SIGTERM (or its
restart signal) at a set time; every request of the schedule gets one outcome (loadtests/stopping.py), and the target
side says what the server did (servers/target.py: Termination, Restart). The runner's stop phase and `python -m lab
lifecycle` both run `each` over `stop_once` (or `restart_once`: the same load, kept on until the new workers serve).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from core.errors import UsageError
from lab import bundle
from lab.bundle import RestartTest, StopTest
from lab.config import Graceful
from loadtests import scenarios
from loadtests.stopping import StopClient, StopLoad, capacity
from servers.matrix import Cell, Matrix
from servers.own_app import NAME as OWN
from servers.target import Restart, RunningServer, ServerError, TargetBackend

T = TypeVar("T")
Test = TypeVar("Test", StopTest, RestartTest)

SHORT, LONG = "plaintext", "io"  # the scenarios whose requests the schedule mixes
SECONDS_PER_STOP = (
    4.0  # one stop, server start to exit, with the lab's timeout (docs/lifecycle.md): kept free by the budget
)


@dataclass(frozen=True)
class StopPlan:
    """What one stop offers the server; the same for every cell, so the servers are compared on one schedule."""

    fraction: float = 0.5  # the schedule's rate as a share of the cell's capacity (closed model, this client)
    max_rate: float = 3000.0  # requests/s at most: what one Python client keeps on time beside the server
    long_ms: int = 500  # each long request waits this long in the app (/io?ms=N): well above a short one's latency
    long_share: float = 0.05
    idle: int = 4  # idle keep-alive connections
    before: float = 1.0  # seconds of schedule before SIGTERM
    after: float = 0.5  # and after it: the new requests a stopping server meets

    def describe(self) -> str:
        return (
            f"open model at {self.fraction:.0%} of each cell's capacity (at most {self.max_rate:g}/s), "
            f"{self.long_share:.0%} of requests /io?ms={self.long_ms}, {self.idle} idle keep-alive connections, "
            f"SIGTERM {self.before:g} s into the schedule, {self.after:g} s of schedule after it"
        )


@dataclass(frozen=True)
class RestartPlan(StopPlan):
    """A stop's plan around a restart: the schedule runs on until the new workers serve, then `settle` s more."""

    settle: float = 2.0
    longest: float = 15.0  # seconds the restart is waited for, and the schedule's longest after the signal

    def describe(self) -> str:
        return (
            f"open model at {self.fraction:.0%} of each cell's capacity (at most {self.max_rate:g}/s), "
            f"{self.long_share:.0%} of requests /io?ms={self.long_ms}, {self.idle} idle keep-alive connections, "
            f"the restart signal {self.before:g} s into the schedule, kept on until the new workers serve and "
            f"{self.settle:g} s more (at most {self.longest:g} s after the signal)"
        )


def restart_cell(cell: Cell, matrix: Matrix) -> Cell:
    """The cell with as many workers as its server needs to restart them (matrix.toml: restart_workers)."""
    need = matrix.servers[cell.server].stop.restart_workers
    return cell if cell.workers >= need else cell.model_copy(update={"workers": need})


def http1_cells(cells: list[Cell], matrix: Matrix) -> list[Cell]:
    """The cells the stop test can load: its client speaks HTTP/1.1, so an h2c cell's server is stopped on its
    HTTP/1.1 cell beside it (granian `--http 2` resets an HTTP/1.1 connection)."""
    return [cell for cell in cells if matrix.protocol(cell) == "h1"]


def stop_cells(cells: list[Cell], matrix: Matrix, dead: Collection[str] = ()) -> list[Cell]:
    """The cells a run's stop phase stops: its HTTP/1.1 cells in the image's environment that have not failed."""
    return http1_cells([c for c in cells if c.key not in dead and not c.variant], matrix)


def under_load(
    server: RunningServer,
    target: scenarios.Target,
    matrix: Matrix,
    plan: StopPlan,
    number: int,
    after: float,
    act: Callable[[float, StopClient], T],
) -> tuple[float, StopLoad, T]:
    """The server's capacity, then the schedule at the plan's share of it, with `act(at, client)` run beside it at
    the schedule's signal time `at`: (capacity, what became of every request, what `act` returned)."""
    short = scenarios.plan(matrix.scenario(SHORT), target)
    long = scenarios.plan(matrix.scenario(LONG), target, {"ms": str(plan.long_ms)})
    measured = capacity(target, short)
    rate = min(plan.fraction * measured, plan.max_rate)
    at = time.time() + 0.3 + plan.before  # the idle connections are opened in the first 0.3 s
    client = StopClient(target, short, long, rate, plan.long_share, at, plan.before, after,
                        drain=matrix.stop.kill_after + 1, idle=plan.idle, seed=number)  # fmt: skip
    done: list[T | BaseException] = []

    def signal() -> None:
        try:
            done.append(act(at, client))
        except BaseException as exc:  # handed to the main thread, which raises it
            done.append(exc)
            client.cut(time.time())

    thread = threading.Thread(target=signal, name="signal", daemon=True)
    thread.start()
    try:
        load = client.run()
    finally:
        thread.join()
    outcome = done[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return measured, load, outcome


def lab_apps(cell: Cell, test: str) -> None:
    if cell.app == OWN:
        raise UsageError(f"cell {cell.key}: the {test} test needs the lab's apps (their /io and lifespan report)")


@dataclass(frozen=True)
class Bench:
    """Where the tests of a run (or of the lifecycle command) start their servers and send their load: the target
    backend, the matrix, the servers' address (the target host's, or loopback) and port, and the graceful timeout."""

    targets: TargetBackend
    matrix: Matrix
    target: scenarios.Target
    run_id: str
    graceful: Graceful = "lab"


def stop_once(bench: Bench, cell: Cell, number: int, plan: StopPlan = StopPlan()) -> StopTest:
    """Start the cell, measure its capacity, load it and stop it; that stop's record."""
    lab_apps(cell, "stop")
    matrix = bench.matrix
    with bench.targets.serve(cell, bench.target.port, bench.graceful) as server:
        measured, load, ended = under_load(
            server, bench.target, matrix, plan, number, plan.after,
            lambda at, _: server.terminate(at, matrix.stop.kill_after),
        )  # fmt: skip
    return StopTest(
        schema_version=bundle.SCHEMA_VERSION, kind="stop", run_id=bench.run_id, key=cell.key, cell=cell,
        number=number, graceful=bench.graceful, capacity=round(measured, 1), fraction=plan.fraction, load=load,
        server=ended,
    )  # fmt: skip


def restart_once(bench: Bench, cell: Cell, number: int, plan: RestartPlan = RestartPlan()) -> RestartTest:
    """Start the cell (with the workers its restart needs), measure its capacity, load it and send its restart
    signal; once the new workers serve and `settle` seconds more, see that it still serves, and stop it."""
    lab_apps(cell, "restart")
    matrix, target = bench.matrix, bench.target
    cell = restart_cell(cell, matrix)
    matrix.valid(cell)
    with bench.targets.serve(cell, target.port, bench.graceful) as server:

        def restart(at: float, client: StopClient) -> Restart:
            restarted = server.restart(at, plan.longest)
            client.cut((restarted.done_at or time.time()) + plan.settle)
            return restarted

        measured, load, restarted = under_load(server, target, matrix, plan, number, plan.longest, restart)
        try:
            short = scenarios.plan(matrix.scenario(SHORT), target)
            after = capacity(target, short, seconds=0.3) if server.alive() else 0.0
        except OSError:
            after = 0.0
        try:
            code: int | None = server.stop(matrix.stop.kill_after)
        except ServerError:
            code = None
    return RestartTest(
        schema_version=bundle.SCHEMA_VERSION, kind="restart", run_id=bench.run_id, key=cell.key, cell=cell,
        number=number, graceful=bench.graceful, capacity=round(measured, 1), fraction=plan.fraction,
        settle=plan.settle, load=load, server=restarted, capacity_after=round(after, 1), exit_code=code,
        stopped_cleanly=code == 0,
    )  # fmt: skip


def each(
    kind: str,
    cells: Sequence[Cell],
    count: int,
    test: Callable[[Cell, int], Test],
    path_of: Callable[[Cell, int], Path],
    said: Callable[[Test], None],
    failed: Callable[[Cell, int, Exception], None],
    skip: Collection[str] = (),
) -> list[Test]:
    """Each cell `count` times (`kind`: stop or restart), cells interleaved (one test of each, then the next), each on
    a fresh server: every record written where `path_of` says and said; one already there (before a resume) is read,
    not measured again;
    a test that fails (the server's fault, or its broken connections: OSError) goes to `failed`, and a cell in
    `skip` (it failed before) is left out."""
    records: list[Test] = []
    for number in range(1, count + 1):
        for cell in cells:
            path = path_of(cell, number)
            if cell.key in skip:
                continue
            if path.exists():
                records.append(bundle.read_model(path, kind))
                continue
            try:
                record = test(cell, number)
            except (ServerError, OSError) as exc:
                failed(cell, number, exc)
                continue
            bundle.write_record(path, record)
            records.append(record)
            said(record)
    return records
