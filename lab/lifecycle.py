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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from core.errors import UsageError
from lab import bundle
from lab.bundle import RestartTest, StopTest
from loadtests import scenarios
from loadtests.stopping import LOST, OUTCOMES, StopClient, capacity
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


# --- what the stops of one server say ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerStops:
    """A server's stops (all its cells, one graceful setting): the figures of the report's table."""

    server: str
    graceful: str
    stops: int
    scheduled: int
    outcomes: dict[str, int]  # summed over the stops
    lost: list[int]  # per stop
    lost_before: list[int]  # per stop: of the requests due before SIGTERM
    drain: list[float]  # seconds from SIGTERM to the last answer, per stop
    exit_after: list[float | None]  # seconds from SIGTERM to the exit, per stop (None: killed)
    exit_codes: dict[int | None, int]
    shutdown_ran: int  # stops in which every worker's lifespan shutdown began
    shutdown_completed: int
    killed: int
    leftovers: int  # stops after which something of the server still ran or listened

    @property
    def median_drain(self) -> float | None:
        return median(self.drain) if self.drain else None

    def facts(self) -> dict[str, int]:
        """What a graceful stop promises, each as the number of stops in which it held. The counts (lost per stop,
        refused, drain) scale with each cell's rate and the moment the listener closed; these do not, so two runs
        agree on a server's outcome when each has the same extent (never, always or sometimes)."""
        return {
            "exit 0": self.exit_codes.get(0, 0), "lifespan shutdown completed": self.shutdown_completed,
            "a request due before SIGTERM lost": sum(n > 0 for n in self.lost_before), "killed": self.killed,
            "something left behind": self.leftovers,
        }  # fmt: skip

    def extent(self, fact: str) -> str:
        n = self.facts()[fact]
        return "never" if n == 0 else "in every stop" if n == self.stops else f"in {n} of {self.stops} stops"

    def kinds(self) -> dict[str, str]:
        """Each fact's extent as never, always or sometimes: what two runs must share to agree."""
        return {f: "never" if n == 0 else "always" if n == self.stops else "sometimes" for f, n in self.facts().items()}

    def outcome(self) -> str:
        return "; ".join(f"{fact} {self.extent(fact)}" for fact in self.facts())


def by_server(stops: list[StopTest]) -> list[ServerStops]:
    groups: dict[tuple[str, str], list[StopTest]] = {}
    for s in stops:
        groups.setdefault((s.cell.server, s.graceful), []).append(s)
    found = []
    for (server, graceful), group in sorted(groups.items()):
        total: Counter[str] = Counter()
        for s in group:
            total.update(s.load.outcomes)
        found.append(
            ServerStops(
                server=server,
                graceful=graceful,
                stops=len(group),
                scheduled=sum(s.load.scheduled for s in group),
                outcomes={o: total[o] for o in OUTCOMES},
                lost=[s.lost for s in group],
                lost_before=[s.load.lost_before for s in group],
                drain=[s.load.last_answer for s in group if s.load.last_answer is not None],
                exit_after=[s.exit_after for s in group],
                exit_codes=dict(Counter(s.server.exit_code for s in group)),
                shutdown_ran=sum(s.server.shutdown_ran for s in group),
                shutdown_completed=sum(s.server.shutdown_completed for s in group),
                killed=sum(s.server.killed for s in group),
                leftovers=sum(bool(s.server.leftovers or s.server.still_listening) for s in group),
            )
        )
    return found


def spread(values: list[float | None], unit: str = "s") -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    low, high = min(known), max(known)
    text = f"{low:.2f}" if abs(high - low) < 0.005 else f"{low:.2f}-{high:.2f}"
    return text + f" {unit}" + (f" ({len(values) - len(known)} killed)" if len(known) < len(values) else "")


COLUMNS = (
    "server", "graceful timeout", "stops", "scheduled", "lost (per stop)", "of them due before SIGTERM", "refused",
    "drain: SIGTERM → last answer",
    "SIGTERM → exit", "exit codes", "lifespan shutdown ran / completed", "killed", "left behind",
)  # fmt: skip


def rows(stops: list[StopTest]) -> list[list[str]]:
    """The "Stopping under load" table: one row per server and graceful setting, in COLUMNS."""
    found = []
    for s in by_server(stops):
        codes = ", ".join(f"{code} ×{n}" for code, n in s.exit_codes.items())
        lost = f"{sum(s.lost)} ({min(s.lost)}-{max(s.lost)})" if s.lost else "-"
        found.append([
            s.server, s.graceful, str(s.stops), str(s.scheduled), lost, str(sum(s.lost_before)),
            str(s.outcomes["refused"]),
            spread(list(s.drain)), spread(s.exit_after), codes,
            f"{s.shutdown_ran}/{s.stops} / {s.shutdown_completed}/{s.stops}", str(s.killed), str(s.leftovers),
        ])  # fmt: skip
    return found


def markdown(columns: Sequence[str], found: list[list[str]]) -> list[str]:
    """A table as Markdown lines."""
    head = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return [*head, *("| " + " | ".join(row) + " |" for row in found)]


def table(stops: list[StopTest]) -> list[str]:
    """The table as Markdown lines."""
    return markdown(COLUMNS, rows(stops))


def outcome_line(stop: StopTest) -> str:
    counted = ", ".join(f"{o} {n}" for o, n in stop.load.outcomes.items() if n)
    exit_after = stop.exit_after
    exited = "killed" if exit_after is None else f"exit {stop.server.exit_code} after {exit_after:.2f} s"
    lifespan = "completed" if stop.server.shutdown_completed else "ran" if stop.server.shutdown_ran else "not run"
    return (
        f"{stop.key} stop {stop.number} ({stop.graceful}): {stop.load.scheduled} scheduled at "
        f"{stop.load.rate:.0f}/s: {counted}; lost {stop.lost} ({stop.load.lost_before} due before SIGTERM); "
        f"{exited}; lifespan shutdown {lifespan}"
        + "".join(f"; still running after the exit: {line}" for line in stop.server.leftover_cmdlines)
    )


def stability(stops: list[StopTest]) -> list[str]:
    """Per server: each outcome, and the losses due before SIGTERM, as stable (in every stop, or in none) or varying
    (in some stops only), with its count per stop (the counts scale with each cell's rate)."""
    lines = []
    for s in by_server(stops):
        group = [x for x in stops if x.cell.server == s.server and x.graceful == s.graceful]
        measures = {o: [x.load.outcomes[o] for x in group] for o in OUTCOMES}
        measures["lost due before SIGTERM"] = [x.load.lost_before for x in group]
        measures["in flight at SIGTERM, not ok"] = [sum(x.load.in_flight.values()) - x.load.in_flight["ok"]
                                                    for x in group]  # fmt: skip
        said = []
        for name, values in measures.items():
            seen = sum(v > 0 for v in values)
            if seen in (0, len(values)):
                kind = "never (stable)" if seen == 0 else "in every stop (stable)"
            else:
                kind = f"in {seen} of {len(values)} stops (varies)"
            said.append(f"{name}: {kind}" + (f", {min(values)}-{max(values)} per stop" if seen else ""))
        lines.append(f"- {s.server} ({s.graceful} timeout, {s.stops} stops): " + "; ".join(said))
    return lines


def outcomes(stops: Sequence[StopTest]) -> dict[str, ServerStops]:
    """Per server, its stops with the lab's timeout (the runner's stop phase)."""
    return {s.server: s for s in by_server(list(stops)) if s.graceful == "lab"}


def write_outputs(root: Path, stops: list[StopTest]) -> list[Path]:
    """lifecycle.md (the table, each outcome's stability, one line per stop) and the timeline chart, in `root`."""
    from lab.stop_charts import draw_timeline

    charts = draw_timeline(stops, root / "charts")
    lines = ["# Stopping under load", "", StopPlan().describe() + ".", "", *table(stops), "",
             "Per server: which outcomes came in every stop or in none (stable) and which in some only (varies).", "",
             *stability(stops), ""]  # fmt: skip
    if charts:
        lines += [f"![One stop per server]({charts[0].relative_to(root)})", ""]
    lines += ["## Every stop", "", *(f"- {outcome_line(s)}" for s in sorted(stops, key=lambda s: (s.key, s.number)))]
    (root / "lifecycle.md").write_text("\n".join(lines) + "\n")
    return [root / "lifecycle.md", *charts]


# --- what the restarts of one server say -------------------------------------------------------------------------

RESTART_COLUMNS = (
    "server", "cells", "restarts", "scheduled", "lost (per restart)", "of them in flight at the signal", "refused",
    "longest gap (before the signal)", "back to rate", "signal → new workers serve, old gone",
    "workers replaced", "served after", "stopped cleanly",
)  # fmt: skip


def restart_rows(restarts: list[RestartTest]) -> list[list[str]]:
    """The "Restarting under load" table: one row per server and graceful setting, in RESTART_COLUMNS."""
    groups: dict[tuple[str, str], list[RestartTest]] = {}
    for r in restarts:
        groups.setdefault((r.cell.server, r.graceful), []).append(r)
    found = []
    for (server, _), group in sorted(groups.items()):
        n = len(group)
        lost = [r.lost for r in group]
        sent_before = [sum(r.load.in_flight[o] for o in LOST) for r in group]
        gaps = [r.load.service.longest_gap for r in group if r.load.service]
        normal = [r.load.service.longest_gap_before for r in group if r.load.service]
        back = [r.load.service.recovered for r in group if r.load.service]
        done = [None if r.server.done_at is None else r.server.done_at - r.server.signal_at for r in group]
        found.append([
            server, ", ".join(sorted({r.key for r in group})), str(n), f"{sum(r.load.scheduled for r in group):,}",
            f"{sum(lost)} ({min(lost)}-{max(lost)})", str(sum(sent_before)),
            str(sum(r.load.outcomes["refused"] for r in group)),
            f"{spread(list(gaps))} ({spread(list(normal))})", spread(back).replace("killed", "never"),
            spread(done).replace("killed", "not seen"),
            f"{sum(r.server.replaced for r in group)}/{n}", f"{sum(r.capacity_after > 0 for r in group)}/{n}",
            f"{sum(r.stopped_cleanly for r in group)}/{n}",
        ])  # fmt: skip
    return found


def restart_table(restarts: list[RestartTest]) -> list[str]:
    return markdown(RESTART_COLUMNS, restart_rows(restarts))


def restart_line(r: RestartTest) -> str:
    counted = ", ".join(f"{o} {n}" for o, n in r.load.outcomes.items() if n)
    service = r.load.service
    done = "not seen done" if r.server.done_at is None else f"done {r.server.done_at - r.server.signal_at:.2f} s"
    gap = f"longest gap {service.longest_gap:.3f} s from {service.gap_from:+.3f} s" if service else ""
    back = "" if service is None else "never back to rate" if service.recovered is None else \
        f"back to rate {service.recovered:.2f} s"  # fmt: skip
    return (
        f"{r.key} restart {r.number} ({r.server.signal}): {r.load.scheduled} scheduled at {r.load.rate:.0f}/s: "
        f"{counted}; lost {r.lost}; {done} after the signal, workers {r.server.old_workers} -> "
        f"{r.server.new_workers}; {gap}; {back}; {r.capacity_after:.0f}/s after (before {r.capacity:.0f}/s); "
        f"stop: exit {r.exit_code}"
    )


def write_restart_outputs(root: Path, restarts: list[RestartTest]) -> list[Path]:
    """restarts.md in `root`: the table and one line per restart."""
    lines = ["# Restarting under load", "", RestartPlan().describe() + ".", "", *restart_table(restarts), "",
             "## Every restart", "",
             *(f"- {restart_line(r)}" for r in sorted(restarts, key=lambda r: (r.key, r.number)))]  # fmt: skip
    (root / "restarts.md").write_text("\n".join(lines) + "\n")
    return [root / "restarts.md"]
