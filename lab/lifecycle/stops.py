"""Stopping and restarting under load: one cell's server started fresh, loaded in the open model at a stated share
of its capacity with short and long requests in flight and idle keep-alive connections open, and sent SIGTERM at a
set time; every request of the schedule gets one outcome (loadtests/stopping.py), and the target side says what the
server did (servers/target.py: Termination). The runner's stop phase and `python -m lab lifecycle` both run
`stop_once`; `python -m lab lifecycle --restart` runs `restart_once`: the same load around the server's restart
signal, kept on until its new workers serve (servers/target.py: Restart).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from core.errors import UsageError
from lab import bundle
from lab.bundle import RestartTest, StopTest
from loadtests import scenarios
from loadtests.stopping import StopClient, capacity
from servers.matrix import Cell, Matrix
from servers.own_app import NAME as OWN
from servers.target import Restart, ServerError, TargetBackend, Termination

SHORT, LONG = "plaintext", "io"  # the scenarios whose requests the schedule mixes
# One stop, start to exit, with the lab's timeout (docs/lifecycle.md: measured here 2026-12-03, 30 stops of uvicorn in
# about 115 s: 3.8 s each, server start included): what the budget keeps free for the stop phase.
SECONDS_PER_STOP = 4.0


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


def stop_once(
    targets: TargetBackend,
    matrix: Matrix,
    cell: Cell,
    port: int,
    number: int,
    run_id: str,
    graceful: str = "lab",
    plan: StopPlan = StopPlan(),
) -> StopTest:
    """Start the cell, measure its capacity, load it and stop it; the record of that stop."""
    if cell.app == OWN:
        raise UsageError(f"cell {cell.key}: the stop test needs the lab's apps (their /io and lifespan report)")
    kill_after = matrix.stop.kill_after
    target = scenarios.Target("127.0.0.1", port)
    short = scenarios.plan(matrix.scenario(SHORT), target)
    long = scenarios.plan(matrix.scenario(LONG), target, {"ms": str(plan.long_ms)})
    ended: list[Termination | BaseException] = []
    with targets.serve(cell, port, graceful) as server:
        measured = capacity(target, short)
        rate = min(plan.fraction * measured, plan.max_rate)
        stop_at = time.time() + 0.3 + plan.before  # the idle connections are opened in the first 0.3 s

        def terminate() -> None:
            try:
                ended.append(server.terminate(stop_at, kill_after))
            except BaseException as exc:  # handed to the main thread, which raises it
                ended.append(exc)

        thread = threading.Thread(target=terminate, name="sigterm", daemon=True)
        thread.start()
        try:
            client = StopClient(target, short, long, rate, plan.long_share, stop_at, plan.before, plan.after,
                                drain=kill_after + 1, idle=plan.idle, seed=number)  # fmt: skip
            load = client.run()
        finally:
            thread.join()
    if isinstance(ended[0], BaseException):
        raise ended[0]
    return StopTest(
        schema_version=bundle.SCHEMA_VERSION, kind="stop", run_id=run_id, key=cell.key, cell=cell, number=number,
        graceful=graceful, capacity=round(measured, 1), fraction=plan.fraction, load=load, server=ended[0],
    )  # fmt: skip


def restart_once(
    targets: TargetBackend,
    matrix: Matrix,
    cell: Cell,
    port: int,
    number: int,
    run_id: str,
    graceful: str = "lab",
    plan: RestartPlan = RestartPlan(),
) -> RestartTest:
    """Start the cell (with the workers its restart needs), measure its capacity, load it and send its restart
    signal; once the new workers serve and `settle` seconds more, see that it still serves, and stop it."""
    if cell.app == OWN:
        raise UsageError(f"cell {cell.key}: the restart test needs the lab's apps (their /io and lifespan report)")
    cell = restart_cell(cell, matrix)
    matrix.valid(cell)
    target = scenarios.Target("127.0.0.1", port)
    short = scenarios.plan(matrix.scenario(SHORT), target)
    long = scenarios.plan(matrix.scenario(LONG), target, {"ms": str(plan.long_ms)})
    done: list[Restart | BaseException] = []
    with targets.serve(cell, port, graceful) as server:
        measured = capacity(target, short)
        rate = min(plan.fraction * measured, plan.max_rate)
        signal_at = time.time() + 0.3 + plan.before  # the idle connections are opened in the first 0.3 s
        client = StopClient(target, short, long, rate, plan.long_share, signal_at, plan.before, plan.longest,
                            drain=matrix.stop.kill_after + 1, idle=plan.idle, seed=number)  # fmt: skip

        def restart() -> None:
            try:
                restarted = server.restart(signal_at, plan.longest)
            except BaseException as exc:  # handed to the main thread, which raises it
                done.append(exc)
                client.cut(time.time())
                return
            done.append(restarted)
            client.cut((restarted.done_at or time.time()) + plan.settle)

        thread = threading.Thread(target=restart, name="restart", daemon=True)
        thread.start()
        try:
            load = client.run()
        finally:
            thread.join()
        if isinstance(done[0], BaseException):
            raise done[0]
        try:
            after = capacity(target, short, seconds=0.3) if server.alive() else 0.0
        except OSError:
            after = 0.0
        try:
            code: int | None = server.stop(matrix.stop.kill_after)
        except ServerError:
            code = None
    return RestartTest(
        schema_version=bundle.SCHEMA_VERSION, kind="restart", run_id=run_id, key=cell.key, cell=cell, number=number,
        graceful=graceful, capacity=round(measured, 1), fraction=plan.fraction, settle=plan.settle, load=load,
        server=done[0], capacity_after=round(after, 1), exit_code=code, stopped_cleanly=code == 0,
    )  # fmt: skip
