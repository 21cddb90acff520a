"""Run a configuration's phases (lab/config.py) through the two backends: the plan (lab/plan.py) executed against
the ledger (lab/ledger.py), within the budget (lab/budget.py), with the referee's rule (lab/referee_rule.py),
reporting to a listener (lab/progress.py).

Every repeat is written as soon as it ends. A cell whose server fails to start, dies or hangs is recorded with its
log tail and left out of the rest of the run (a resumed run tries it again); the matrix goes on. A lost service
(the target agent, the Locust master or a worker) stops the run: the manifest says what was lost and when, and
`--resume RUN_ID` continues it once the service is back. Interrupted (Ctrl-C, SIGTERM), the current server is
stopped, what is on disk stays valid, and `--resume` skips what is done. Anything else is a bug in the lab: the
manifest is marked `failed` with the error, and the error goes on to the command line.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from pathlib import Path

from core import hostfacts, interrupts
from core.errors import ProcessFailedError, ServiceLostError
from lab import bundle, scale
from lab.analysis import stats
from lab.analysis.analyze import Analysis
from lab.analysis.points import speed_shares
from lab.bundle import Manifest, PairWindow, Part, Repeat, Skipped, SweepRates
from lab.config import RunConfig
from lab.measure import pair as pairs
from lab.measure.pair import log_ratio, measure_pair, saturated
from lab.measure.repeat import Measure, Refereed, health
from lab.measure.window import Work
from lab.run import fingerprint, hosts, plan, sweep
from lab.run.budget import RERUNS, Budget
from lab.run.ledger import Ledger
from lab.run.plan import PairVisit, Rates, Visit
from lab.run.progress import Listener, Progress
from lab.run.referee_rule import RefereeRule
from loadtests.load import LoadBackend, LoadError
from servers.matrix import Cell, Matrix
from servers.target import RunningServer, ServerError, TargetBackend
from servers.variants import Environment

HUNG_STOP = 3.0  # seconds a server that stopped answering gets to stop on SIGTERM before SIGKILL


class RunInterruptedError(Exception):
    """SIGTERM or Ctrl-C."""


class CellDiedError(Exception):
    """The cell's server died or stopped answering during its load."""

    def __init__(self, message: str, label: str) -> None:
        super().__init__(message)
        self.label = label


class Runner:
    def __init__(
        self,
        config: RunConfig,
        matrix: Matrix,
        root: Path,
        targets: TargetBackend,
        loads: LoadBackend,
        listener: Listener | None = None,
        environments: list[Environment] | None = None,
    ) -> None:
        self.config, self.matrix, self.run_id = config, matrix, root.name
        self.environments = environments or []  # the variants as the target side installed them
        self.targets, self.loads = targets, loads
        hint = " | after Ctrl-C: RESUME=last docker compose up" if config.target_agent else ""
        self.listener: Listener = listener or Progress(resume_hint=hint)
        self.ledger = Ledger(root, self.run_id)
        self.measure = Measure(config, matrix, self.run_id, loads, tuple(targets.cpus), targets)
        self.referee = RefereeRule(config.referee_seconds)
        self.budget = Budget(
            config.budget_seconds, time.time(), config.warmup + config.duration, config.sweep_seconds,
            config.referee_seconds,
        )  # fmt: skip
        self.dead: set[str] = set()  # cells that failed in this session: left out of its later phases
        self.firsts: dict[tuple[str, str], Refereed] = {}  # each point's first referee in this session
        self.left = 0  # throughput repeats still to measure (the budget's estimate of the rest)
        self.speed_due = False  # set at each round and the sweep: the next visit first times the machine
        self.capacity: dict[str, dict[str, float]] = {}  # scenario -> cell key -> capacity, once the sweep is planned
        self.analysis: Analysis | None = None  # the bundle's, once the run has written its outputs

    @property
    def manifest(self) -> Manifest:
        assert self.ledger.manifest is not None
        return self.ledger.manifest

    # --- the run ------------------------------------------------------------------------------------------------
    def run(self, resumed: Manifest | None = None) -> int:
        """The whole run (or the rest of a resumed one): 0 complete, 1 a failure or a lost service, 130 interrupted."""
        self.start(resumed)
        status, note = "complete", None
        with interrupts.raising(RunInterruptedError):
            try:
                self.phases()
            except RunInterruptedError as exc:
                status, note = "interrupted", f"by {exc}"
                self.listener.say(f"interrupted by {exc}; resume with --resume {self.run_id}")
            except (ServiceLostError, ProcessFailedError) as exc:  # a side of the lab gone, or unable to start
                status, note = "stopped", f"lost: {exc}"
                self.listener.say(f"STOPPED: {note}; resume with --resume {self.run_id} once it is back")
            except Exception as exc:
                self.end("failed", f"a bug in the lab: {type(exc).__name__}: {exc}")
                raise
            finally:
                self.measure.close()
        self.end(status, note)
        charts_ok = self.write_outputs(charts=status != "interrupted")  # interrupted: be quick, a resume redraws
        if status == "interrupted":
            return 130
        return 1 if status != "complete" or self.manifest.failures or not charts_ok else 0

    def phases(self) -> None:
        c = self.config
        self.sample_speed()
        if c.calibrate and self.ledger.calibration() is None:
            self.calibrate()
        self.pairs(plan.pair_rounds(c, self.matrix, self.run_id))
        rounds = plan.plan(c, self.matrix, self.run_id)
        self.left = sum(self.todo(visit) for visit in (v for r in rounds for v in r))
        self.listener.planned(sum(len(v.work) for r in rounds for v in r))
        for number, visits in enumerate(rounds, start=1):
            self.round(number, visits)
        for number, keys in enumerate(self.manifest.rounds[c.repeats :], start=c.repeats + 1):
            self.extra_round(number, [self.matrix.cell_from_key(k) for k in keys])  # recorded before a resume
        rates = self.sweep_rates() if c.sweep_seconds else {}
        if c.budget_seconds:
            while self.extra_round_fits(rates):
                self.extra_round(len(self.manifest.rounds) + 1, self.undecided())
        if rates:
            self.sweep(rates)
        if c.stops:
            self.stop_phase()

    # --- the phases ---------------------------------------------------------------------------------------------
    def round(self, number: int, visits: list[Visit]) -> None:
        if len(self.manifest.rounds) < number:
            self.ledger.save(rounds=[*self.manifest.rounds, [v.cell.key for v in visits]])
        self.speed_due = True
        for visit in visits:
            self.visit(visit)

    def extra_round(self, number: int, cells: list[Cell]) -> None:
        """Another round over these cells, in an order of its own (recorded, so a resume finishes it)."""
        visits = plan.round_visits(self.config, self.matrix, number, plan.round_order(self.run_id, number, cells))
        self.listener.planned(sum(len(v.work) for v in visits))
        self.left += sum(self.todo(v) for v in visits)
        if len(self.manifest.rounds) < number:
            self.listener.say(f"extra round {number}: {len(visits)} cells whose comparisons are still undecided")
        self.round(number, visits)

    def extra_round_fits(self, rates: dict[str, SweepRates]) -> bool:
        """More repeats while comparisons are undecided, up to max_repeats, while the round and the sweep fit."""
        undecided = self.undecided()
        if not undecided or len(self.manifest.rounds) >= self.config.max_repeats:
            return False
        visit = self.budget.per_visit(self.listener_per_repeat(), len(self.config.scenarios))
        return self.budget.fits_round(visit * len(undecided), self.sweep_estimate(rates) + self.stops_estimate())

    def stops_estimate(self) -> float:
        """Seconds the stop phase will take: kept free of extra rounds, as the sweep's are."""
        from lab.lifecycle.stops import SECONDS_PER_STOP

        return SECONDS_PER_STOP * self.config.stops * len(self.stop_cells())

    def stop_cells(self) -> list[Cell]:
        """The cells the stop phase stops. Its client speaks HTTP/1.1 (docs/lifecycle.md): an h2c cell's server is
        stopped on its HTTP/1.1 cell."""
        from lab.lifecycle.stops import http1_cells

        return http1_cells([c for c in self.config.cells if c.key not in self.dead and not c.variant], self.matrix)

    def sweep(self, rates: dict[str, SweepRates]) -> None:
        for scenario, chosen in rates.items():
            self.listener.say(
                f"sweep {scenario}: common rates {', '.join(f'{r:g}' for r in chosen.common)}"
                + (f"; fast-only {', '.join(f'{r:g}' for r in chosen.fast)}" if chosen.fast else "")
                + f" ({chosen.chosen_from})"
            )
        visits = self.sweep_plan(rates)
        self.listener.planned(sum(len(v.work) for v in visits))  # the whole sweep, so the ETA counts it
        self.speed_due = True
        for visit in visits:
            self.visit(visit)

    def stop_phase(self) -> None:
        """Stops under load: each cell `stops` times, cells interleaved (one stop of each, then the next), each stop on
        a fresh server; a stop already in the bundle (before a resume) is not measured again."""
        from lab.lifecycle.stops import StopPlan, stop_once
        from lab.report.stops import outcome_line

        c = self.config
        cells = self.stop_cells()
        self.listener.say(f"stops under load: {len(cells)} HTTP/1.1 cells x {c.stops}, {StopPlan().describe()}")
        for number in range(1, c.stops + 1):
            for cell in cells:
                path = bundle.stop_path(self.ledger.root, cell.key, c.graceful, number)
                if path.exists() or cell.key in self.dead:
                    continue
                try:
                    record = stop_once(self.targets, self.matrix, cell, c.port, number, self.run_id, c.graceful)
                except ServerError as exc:
                    self.dead.add(cell.key)
                    self.fail(cell, None, "stop", str(exc), exc.log_tail)
                    continue
                except OSError as exc:  # the server broke the test's connections before the stop: its failure
                    self.dead.add(cell.key)
                    self.fail(cell, None, "stop", f"the stop test's load failed: {type(exc).__name__}: {exc}", "")
                    continue
                bundle.write_record(path, record)
                self.listener.say(outcome_line(record))

    def pairs(self, rounds: list[list[PairVisit]]) -> None:
        """An A/B run's pair rounds first: the verdict's own measurement, kept even if the run is stopped later."""
        if not rounds:
            return
        self.listener.planned(sum(len(v.work) for visits in rounds for v in visits))
        c = self.config
        self.listener.say(
            f"A/B: {len(rounds)} pair rounds, both variants of each cell running at once on the server CPUs and "
            f"loaded {'together' if c.pair_mode == 'together' else f'in turns of {c.slice_seconds:g} s'}, "
            f"{c.pair_seconds:g} s per scenario"
        )
        for visits in rounds:
            self.speed_due = True
            for visit in visits:
                self.pair_visit(visit)

    def pair_visit(self, visit: PairVisit) -> None:
        """Both variants' servers started afresh (the side drawn first on the run's port), a paired window per
        scenario on them, both stopped."""
        todo = [w for w in visit.work if not self.ledger.pair_done(visit, w)]
        self.listener.passed(len(visit.work) - len(todo))
        if not todo or {visit.a.key, visit.b.key} & self.dead:
            self.listener.passed(len(todo))
            return
        if self.speed_due:
            self.sample_speed()
            self.speed_due = False
        order = (visit.a, visit.b) if visit.first == "A" else (visit.b, visit.a)
        servers: dict[str, RunningServer] = {}
        current, phase = order[0], "start"
        try:
            with contextlib.ExitStack() as stack:
                for cell, port in zip(order, self.config.ports, strict=True):
                    current = cell
                    servers[cell.key] = stack.enter_context(self.targets.serve(cell, port))
                a, b = servers[visit.a.key], servers[visit.b.key]
                phase = "load"
                for work in todo:
                    record = self.pair_window(a, b, visit, work)
                    self.ledger.record_pair(record)
                    self.report_pair(record)
                    dead = [s for s in (a, b) if health(s)]
                    if dead:
                        current = dead[0].cell
                        raise ServerError(f"{current.key} died or hung: {health(dead[0])}", dead[0].log_tail())
                phase = "stop"
                for cell in order:
                    current = cell
                    server = servers[cell.key]
                    if (code := server.stop()) != 0:
                        self.fail(cell, None, "stop", f"server exited {code} after SIGTERM", server.log_tail())
        except ServerError as exc:
            self.fail(current, None, phase, str(exc), exc.log_tail)  # type: ignore[arg-type]

    def pair_window(self, a: RunningServer, b: RunningServer, visit: PairVisit, work: Work) -> PairWindow:
        """One pair window, measured again (up to RERUNS times) while the machine disturbs it or the server CPUs
        are not saturated: such a window's B ÷ A says more about the client's or the neighbour's order of service."""
        earlier: list[str] = []
        while True:
            record = measure_pair(self.measure, a, b, visit, work, earlier)
            why = pairs.again(record)
            if why is None or len(earlier) >= RERUNS:
                return record
            found = pairs.log_ratio(record)
            earlier.append(f"attempt {len(earlier) + 1}: B/A {math.exp(found or 0.0):.3f}, {why}")
            self.listener.say(f"{visit.base.key} A/B {work.scenario} #{work.number}: {why}; measuring again")

    def report_pair(self, record: PairWindow) -> None:
        label = f"{record.key} A/B {record.scenario} #{record.round}"
        found = log_ratio(record)
        if not record.ok or found is None or record.load is None or record.load.pair is None:
            self.listener.measured(f"{label}: FAILED: {record.failure}")
            return
        pair = record.load.pair
        flags = "" if saturated(record) else " (server CPUs not saturated: the client set the pace)"
        errors = sum(pair.a.errors.values()) + sum(pair.b.errors.values())
        flags += f" errors={errors}" if errors else ""
        self.listener.measured(
            f"{label}: B/A {math.exp(found):.3f} ({pair.a.ok / record.load.window.seconds:,.0f} and "
            f"{pair.b.ok / record.load.window.seconds:,.0f} RPS side by side){flags}"
        )

    # --- one visit: a server started, its repeats measured, the server stopped ----------------------------------
    def todo(self, visit: Visit) -> int:
        return sum(1 for w in visit.work if not self.ledger.done(visit.cell, w))

    def visit(self, visit: Visit) -> None:
        cell = visit.cell
        todo = [w for w in visit.work if not self.ledger.done(cell, w)]
        self.listener.passed(len(visit.work) - len(todo))
        if not todo or cell.key in self.dead:
            self.passed(visit, todo)
            return
        if visit.phase == "round":
            self.ledger.clear_failures(cell)
        if self.speed_due:  # before the server starts, while the machine is quiet
            self.sample_speed()
            self.speed_due = False
        started = False
        try:
            with self.targets.serve(cell, self.config.port) as server:
                started = True
                try:
                    for work in todo:
                        self.one(server, cell, work, visit.phase == "round")
                except CellDiedError as exc:
                    tail = server.log_tail()
                    with contextlib.suppress(ServerError):
                        server.stop(HUNG_STOP)
                    self.fail(cell, exc.label, "load", str(exc), tail)
                    return
                code = server.stop()
                if code != 0:
                    self.fail(cell, None, "stop", f"server exited {code} after SIGTERM", server.log_tail())
        except ServerError as exc:
            self.fail(cell, None, "stop" if started else "start", str(exc), exc.log_tail)

    def passed(self, visit: Visit, todo: list[Work]) -> None:
        """Work of a dead cell: not measured, counted as passed."""
        self.listener.passed(len(todo))
        if visit.phase == "round":
            self.left -= len(todo)

    def one(self, server: RunningServer, cell: Cell, work: Work, throughput: bool) -> None:
        """One repeat; the first ok one of a closed point is followed by the referee on the same warm server and
        carries it (its verdict judged with it), and a later one too while the rule wants wrk again. A disturbed
        throughput repeat is measured again while the budget allows. CellDiedError when the server died or hung."""
        scenario, closed = work.scenario, not work.rate
        point = (cell.key, scenario)
        known = (self.firsts.get(point) or self.carried(cell, scenario)) if closed else None
        first = closed and point not in self.firsts and (known is None or known.wrk is None)
        earlier: list[str] = []
        while True:
            began = time.monotonic()
            record = self.measure.repeat(server, cell, work, known or Refereed(None), earlier)
            took = time.monotonic() - began
            self.budget.spent(took, work.warmup, work.duration)
            cond = record.conditions
            if not throughput or not (cond and cond.disturbed and len(earlier) < RERUNS and self.may_rerun(took)):
                break
            self.budget.reruns += 1
            got = f"{record.load.rps:,.0f} RPS, " if record.load else ""
            earlier.append(f"attempt {len(earlier) + 1}: {got}{cond.note}")
            self.listener.say(f"{cell.key} {work.label} #{work.number}: disturbed ({cond.note}); measuring again")
        measured = record.ok and record.load is not None and record.server is not None
        again = closed and not first and measured and self.referee.again(self.ledger.ok(cell, scenario))
        if measured and (first or again):
            record = self.referee_after(server, record, first, work.number)
        self.ledger.record(record)
        if throughput:
            self.left -= 1
        self.report(server, cell, work, record)

    def referee_after(self, server: RunningServer, record: Repeat, first: bool, number: int) -> Repeat:
        """wrk right after the repeat, on the same server; the repeat carries it when it ran (or when it is the
        point's first, so that the reason it did not is kept)."""
        c = self.config
        referee = self.measure.referee(server, record.scenario) if c.referee_seconds else Refereed(None, "not run")
        if first:
            self.firsts[(record.key, record.scenario)] = referee
        else:
            self.referee.ran_again()
        if referee.wrk:
            said = f"again in round {number}, " if not first else ""
            self.listener.say(
                f"{record.key} {record.scenario}: {referee.wrk.tool} {said}{referee.wrk.rps:,.0f} RPS "
                f"({referee.wrk.seconds:.0f} s)"
            )
        return self.measure.carrying(record, referee) if first or referee.wrk else record

    def report(self, server: RunningServer, cell: Cell, work: Work, record: Repeat) -> None:
        label = f"{cell.key} {work.label} #{work.number}"
        if not record.ok or record.load is None:
            self.listener.measured(f"{label}: FAILED: {record.failure}")
            self.loads.check()  # a lost worker or master stops the run here, not one failed repeat at a time
            problem = health(server)
            if problem:
                raise CellDiedError(record.failure or problem, work.label)
            return
        result, verdict = record.load, record.verdict
        flags = f" limit={verdict.limit}" if verdict and verdict.limit not in ("server", "offered") else ""
        flags += " SHORT-OF-RATE" if result.rate_shortfall else ""
        flags += f" errors={sum(result.errors.values())}" if result.errors else ""
        p99 = result.latency.percentiles_us.get("p99", 0) / 1000
        self.listener.measured(f"{label}: {result.rps:,.0f} RPS, p99 {p99:.2f} ms{flags}")

    def fail(self, cell: Cell, scenario: str | None, phase: str, error: str, log_tail: str) -> None:
        self.ledger.fail(cell, scenario, phase, error, log_tail)
        self.dead.add(cell.key)
        self.listener.say(f"FAILED {cell.key} {scenario or ''} ({phase}): {error.splitlines()[0][:200]}")

    def carried(self, cell: Cell, scenario: str) -> Refereed | None:
        """What the referee said on this point before (also before a resume), from the repeat that carries it."""
        carrier = self.ledger.referee_carrier(cell, scenario)
        return Refereed(carrier.referee, "", carrier.referee_cost) if carrier else None

    # --- the budget's questions ---------------------------------------------------------------------------------
    def may_rerun(self, took: float) -> bool:
        c = self.config
        firsts_left = sum(
            1 for cell in c.cells for s in c.scenarios_of(cell, self.matrix) if (cell.key, s) not in self.firsts
        )
        sweep = self.sweep_estimate(self.manifest.sweep) if self.manifest.sweep else self.sweep_guess()
        rest = self.budget.rest(max(self.left - 1, 0), firsts_left, sweep) + self.stops_estimate()
        return self.budget.may_rerun(took, rest)

    def sweep_estimate(self, rates: dict[str, SweepRates]) -> float:
        runs = sum(len(v.work) for v in self.sweep_plan(rates) if v.cell.key not in self.dead)
        return self.budget.sweep_estimate(runs, len(self.config.cells))

    def sweep_guess(self) -> float:
        live = [cell for cell in self.config.cells if cell.key not in self.dead]
        swept = self.config.sweep_scenarios
        points = sum(len([s for s in self.config.scenarios_of(cell, self.matrix) if s in swept]) for cell in live)
        return self.budget.sweep_guess(points, len(live))

    def listener_per_repeat(self) -> float:
        return self.listener.per_repeat if isinstance(self.listener, Progress) else 0.0

    def undecided(self) -> list[Cell]:
        """The live cells in a comparison that is not yet significant: they get more repeats while time allows."""
        c, found = self.config, set()
        cells = {cell.key: cell.model_dump() for cell in c.cells}
        for scenario in c.scenarios:
            repeats = {cell.key: self.ledger.ok(cell, scenario) for cell in c.cells}
            rps = {k: {r.repeat: r.load.rps for r in rs if r.load} for k, rs in repeats.items()}
            noise = stats.blocked_noise(rps, {k: speed_shares(rs) for k, rs in repeats.items()})
            found |= stats.undecided(stats.comparisons(scenario, cells, rps, noise))
        return sorted((cell for cell in c.cells if cell.key in found - self.dead), key=lambda cell: cell.key)

    # --- the sweep's rates --------------------------------------------------------------------------------------
    def capacities(self, scenario: str) -> dict[str, float]:
        """Each live cell's capacity in the scenario: its median RPS, or its referee's when that is higher."""
        found = {}
        for cell in self.config.cells:
            rps = [r.load.rps for r in self.ledger.ok(cell, scenario) if r.load]
            if rps and cell.key not in self.dead:
                carrier = self.ledger.referee_carrier(cell, scenario)
                wrk = carrier.referee.rps if carrier and carrier.referee else 0.0
                found[cell.key] = max(statistics.median(rps), wrk)
        return found

    def sweep_rates(self) -> dict[str, SweepRates]:
        """The sweep's rates: chosen once, from the throughput phase's figures (or --rate), kept in the manifest."""
        c = self.config
        self.capacity = {s: self.capacities(s) for s in c.scenarios}  # which cells run the fast-only rates
        chosen = dict(self.manifest.sweep)
        if not chosen:
            for scenario in c.sweep_scenarios:
                if c.rates:
                    chosen[scenario] = SweepRates(common=sorted(c.rates), fast=[], chosen_from="--rate")
                elif (found := sweep.rates(self.capacity[scenario]))[0]:
                    chosen[scenario] = SweepRates(
                        common=found[0], fast=found[1], chosen_from="the run's throughput figures"
                    )
        self.ledger.save(sweep=chosen)
        return chosen

    def sweep_plan(self, rates: dict[str, SweepRates]) -> list[Visit]:
        mine = {s: Rates(r.common, r.fast) for s, r in rates.items()}
        serves = {
            cell.key: {
                (s, rate): sweep.serves(self.capacity.get(s, {}).get(cell.key, 0.0), rate)
                for s, r in rates.items()
                for rate in r.fast
            }
            for cell in self.config.cells
        }
        return plan.sweep_visits(self.config, self.matrix, self.run_id, mine, serves)

    # --- the manifest -------------------------------------------------------------------------------------------
    def start(self, resumed: Manifest | None) -> None:
        c, machine = self.config, fingerprint.machine()
        wiring = "on this machine" if not (c.target_agent or c.locust_master) else (
            f"through the target agent {c.target_agent} and the Locust master {c.locust_master}"
        )  # fmt: skip
        part = Part(
            started=time.time(), ended=None, status="running", machine_id=machine.machine_id,
            container=machine.container, uid=os.getuid(), wiring=wiring, note=None,
        )  # fmt: skip
        facts, notes = hosts.both(c, self.targets)
        started = resumed.started if resumed else part.started
        self.budget.started = started
        self.ledger.save(
            Manifest(
                schema_version=bundle.SCHEMA_VERSION, kind="manifest", run_id=self.run_id, status="running",
                started=started, ended=None, config=c, machine=machine, versions=hostfacts.versions(),
                lab_commit=fingerprint.lab_commit(),
                skipped=[Skipped(key=x.key, scenario=s, reason=r) for x, s, r in c.skipped(self.matrix)], failures=[],
                parts=[*(ended(p) for p in (resumed.parts if resumed else [])), part],
                rounds=list(resumed.rounds) if resumed else [], sweep=dict(resumed.sweep) if resumed else {},
                extra_rule=extra_rule(c), speed=resumed.speed if resumed else None,
                environments=self.environments or (resumed.environments if resumed else []),
                hosts=facts, host_notes=notes,
            )
        )  # fmt: skip
        self.listener.say(
            f"run {self.run_id}: {len(c.cells)} cells x {len(c.scenarios)} scenarios, {c.repeats} rounds; "
            f"server CPUs {c.server_cpus}, load CPUs {c.load_cpus} with {c.load_workers} Locust worker(s); "
            f"{scale.how(c.server_cpus, c.cells, len({*c.server_cpus, *c.load_cpus}))}"
            + (f"; servers on the target host {c.target_host}" if c.two_hosts else "")
        )
        for note in notes:
            self.listener.say(f"hosts: {note}")

    def end(self, status: str, note: str | None) -> None:
        parts = list(self.manifest.parts)
        parts[-1] = parts[-1].model_copy(update={"ended": time.time(), "status": status, "note": note})
        self.ledger.save(status=status, ended=time.time(), parts=parts)

    def sample_speed(self) -> None:
        """The machine-speed index's next sample, and a burst of the probes that set the run's full speed."""
        self.ledger.save(speed=self.measure.sample_speed(self.manifest.speed))

    def calibrate(self) -> None:
        from lab.run.calibration import calibrate

        self.listener.say("calibrating the load generator on the path every result takes")
        try:
            record = calibrate(self.config, self.matrix, self.targets, self.loads, self.measure, self.listener.say)
        except (LoadError, ServerError) as exc:
            self.listener.say(f"calibration failed (charts will have no ceiling line): {exc}")
            return
        if record is not None:
            self.ledger.calibrated(record)

    def write_outputs(self, charts: bool = True) -> bool:
        """summary.csv, charts, report.html and summary.md, from the bundle's one analysis (kept for the headline)."""
        from lab.analysis.analyze import analyze
        from lab.report import charts as drawing
        from lab.report import pages as report

        root = self.ledger.root
        result = bundle.load_bundle(root)
        self.analysis = analyze(result, self.matrix)
        report.write_summary_csv(self.analysis)
        if not charts:
            self.listener.say(f"summary.csv written; charts and report: python -m lab plot {root}")
            return True
        if result.stops:
            from lab.report.stops import write_outputs as write_stops

            self.listener.say(f"stops under load: {', '.join(str(p) for p in write_stops(root, result.stops))}")
        if not any(r.ok for r in result.repeats):
            self.listener.say("no measured results, so no charts")
            return True
        try:
            drawn = drawing.render(self.analysis)
            pages = report.write(self.analysis, drawn)
        except Exception as exc:  # a chart bug must not lose the run: the bundle is already on disk
            self.listener.say(f"charts failed: {type(exc).__name__}: {exc}; rerun: python -m lab plot {root}")
            return False
        self.listener.say(f"{sum(len(c.files) for c in drawn)} chart files, {pages[0]} and {pages[1]}")
        return True


def ended(part: Part) -> Part:
    """An earlier part still `running` had a runner that died without a word (kill -9, a lost machine)."""
    if part.status != "running":
        return part
    return part.model_copy(update={"status": "interrupted", "note": "its runner died without ending the run"})


def extra_rule(config: RunConfig) -> str:
    """The rule that gave some cells extra repeats, in the run's own numbers (lab/budget.py has the whole rule)."""
    if not config.budget_seconds:
        return "none: no time budget, so every cell has exactly its rounds"
    return (
        f"while the run fits its {config.budget_seconds / 60:g} minutes (the sweep's time kept free): extra rounds "
        f"for the cells in comparisons not yet significant, up to {config.max_repeats} repeats, and disturbed "
        f"repeats measured again up to {RERUNS} times (lab/budget.py)"
    )
