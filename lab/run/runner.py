"""Run a configuration's phases (lab/config.py) through the two backends: the plan (lab/run/plan.py) executed against
the ledger (lab/run/ledger.py), one visit at a time (lab/run/visit.py), within what the budget allows
(lab/run/allowance.py), reporting to a listener (lab/run/progress.py).

Every repeat is written as soon as it ends. A cell whose server fails to start, dies or hangs is recorded with its
log tail and left out of the rest of the run (a resumed run tries it again); the matrix goes on. A lost service
(the target agent, the Locust master or a worker) stops the run: the manifest says what was lost and when, and
`--resume RUN_ID` continues it once the service is back. Interrupted (Ctrl-C, SIGTERM), the current server is
stopped, what is on disk stays valid, and `--resume` skips what is done. Anything else is a bug in the lab: the
manifest is marked `failed` with the error, and the error goes on to the command line.
"""

from __future__ import annotations

import time
from pathlib import Path

from core import interrupts
from core.errors import ProcessFailedError, ServiceLostError
from lab import bundle
from lab.analysis.analyze import Analysis
from lab.bundle import Manifest, SweepRates
from lab.config import RunConfig
from lab.lifecycle import stops
from lab.measure.instrument import Instrument
from lab.report import outputs
from lab.report.stops import outcome_line
from lab.run import manifest, plan
from lab.run.allowance import Allowance
from lab.run.budget import Budget
from lab.run.group_rounds import GroupRounds
from lab.run.ledger import Ledger
from lab.run.plan import GroupVisit, Visit
from lab.run.progress import Listener, Progress
from lab.run.referee_rule import RefereeRule
from lab.run.repeats import Repeats
from lab.run.sweep import Sweeper
from lab.run.visit import Visits
from loadtests.load import LoadBackend, LoadError
from loadtests.scenarios import Target
from servers.matrix import Cell, Matrix
from servers.target import ServerError, TargetBackend
from servers.variants import Environment


class RunInterruptedError(Exception):
    """SIGTERM or Ctrl-C."""


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
        c = self.config = config
        self.matrix, self.run_id, self.targets, self.loads = matrix, root.name, targets, loads
        self.environments = environments or []  # the variants as the target side installed them
        hint = " | after Ctrl-C: RESUME=last docker compose up" if config.target_agent else ""
        self.listener: Listener = listener or Progress(resume_hint=hint)
        self.ledger = Ledger(root, self.run_id)
        self.instrument = Instrument(config, matrix, self.run_id, loads, tuple(targets.cpus), targets)
        self.visits = Visits(targets, self.ledger, self.listener)
        rule = RefereeRule(config.referee_seconds)
        budget = Budget(c.budget_seconds, time.time(), c.warmup + c.duration, c.sweep_seconds, c.referee_seconds)
        self.sweeper = Sweeper(config, matrix, self.ledger, self.visits.dead)
        self.allowance = Allowance(budget, config, matrix, self.ledger, self.visits.dead, rule, self.sweeper,
                                   self.listener)  # fmt: skip
        self.repeats = Repeats(self.instrument, self.ledger, self.listener, loads, budget, rule,
                               self.allowance.may_rerun, self.allowance.measured)  # fmt: skip
        self.group_rounds = GroupRounds(self.instrument, self.ledger, self.listener)
        self.speed_due = False  # set at each round and the sweep: the next visit first times the machine
        self.analysis: Analysis | None = None  # the bundle's, once the run has written its outputs

    @property
    def manifest(self) -> Manifest:
        assert self.ledger.manifest is not None
        return self.ledger.manifest

    # --- the run ------------------------------------------------------------------------------------------------
    def run(self, resumed: Manifest | None = None) -> int:
        """The whole run (or the rest of a resumed one): 0 complete, 1 a failure or a lost service, 130 interrupted."""
        started = manifest.start(self.config, self.matrix, self.ledger, self.targets, self.environments, resumed,
                                 self.listener)  # fmt: skip
        self.allowance.budget.started = started.started
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
                manifest.end(self.ledger, "failed", f"a bug in the lab: {type(exc).__name__}: {exc}")
                raise
            finally:
                self.instrument.close()
        manifest.end(self.ledger, status, note)
        charts_ok = self.write_outputs(drawn=status != "interrupted")  # interrupted: be quick, a resume redraws
        if status == "interrupted":
            return 130
        return 1 if status != "complete" or self.manifest.failures or not charts_ok else 0

    def phases(self) -> None:
        c = self.config
        self.sample_speed()
        if c.calibrate and self.ledger.calibration() is None:
            self.calibrate()
        self.side_by_side(plan.group_rounds(c, self.matrix, self.run_id))
        rounds = plan.plan(c, self.matrix, self.run_id)
        self.allowance.left = sum(self.todo(visit) for visit in (v for r in rounds for v in r))
        self.listener.planned(sum(len(v.work) for r in rounds for v in r))
        for number, visits in enumerate(rounds, start=1):
            self.round(number, visits)
        for number, keys in enumerate(self.manifest.extra_rounds, start=c.pair_rounds + 1):
            self.extra_round(number, keys)  # recorded before a resume
        rates = self.sweeper.rates() if c.sweep_seconds else {}
        if c.budget_seconds:
            while self.allowance.extra_round_fits(rates):
                self.extra_round(c.pair_rounds + len(self.manifest.extra_rounds) + 1, self.allowance.undecided())
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

    def extra_round(self, number: int, keys: list[str]) -> None:
        """Another side-by-side round over these groups (recorded, so a resume finishes it)."""
        visits = plan.group_round(self.config, self.matrix, self.run_id, number, keys)
        if len(self.manifest.extra_rounds) < number - self.config.pair_rounds:
            self.ledger.save(extra_rounds=[*self.manifest.extra_rounds, keys])
            self.listener.say(f"extra side-by-side round {number}: {len(visits)} groups whose comparisons are still "
                              "undecided")  # fmt: skip
        self.side_by_side([visits])

    def sweep(self, rates: dict[str, SweepRates]) -> None:
        for scenario, chosen in rates.items():
            self.listener.say(
                f"sweep {scenario}: common rates {', '.join(f'{r:g}' for r in chosen.common)}"
                + (f"; fast-only {', '.join(f'{r:g}' for r in chosen.fast)}" if chosen.fast else "")
                + f" ({chosen.chosen_from})"
            )
        visits = self.sweeper.visits(rates)
        self.listener.planned(sum(len(v.work) for v in visits))  # the whole sweep, so the ETA counts it
        self.speed_due = True
        for visit in visits:
            self.visit(visit)

    def side_by_side(self, rounds: list[list[GroupVisit]]) -> None:
        """Side-by-side rounds (first in a run: the comparisons' own measurement, kept even if the run is stopped
        later)."""
        if not rounds or not any(rounds):
            return
        self.listener.planned(sum(len(v.work) for visits in rounds for v in visits))
        c = self.config
        turns = "together" if c.pair_mode == "together" else f"in turns of {c.slice_seconds:g} s"
        self.listener.say(
            f"side by side: {len(rounds)} round(s) of {len(rounds[0])} group(s), each group's servers started afresh "
            f"at once on the server CPUs and loaded {turns}, {c.pair_seconds:g} s per scenario"
        )
        for visits in rounds:
            self.speed_due = True
            for visit in visits:
                self.group_visit(visit)

    def stop_phase(self) -> None:
        """Stops under load: each cell `stops` times (lab/lifecycle/stops.py: each); a stop already in the bundle
        (before a resume) is not measured again."""
        c, root = self.config, self.ledger.root
        cells = stops.stop_cells(c.cells, self.matrix, self.visits.dead)
        self.listener.say(f"stops under load: {len(cells)} HTTP/1.1 cells x {c.stops}, {stops.StopPlan().describe()}")

        def failed(cell: Cell, number: int, exc: Exception) -> None:
            if isinstance(exc, ServerError):
                self.visits.fail(cell, None, "stop", str(exc), exc.log_tail)
            else:  # the server broke the test's connections before the stop: its failure
                self.visits.fail(cell, None, "stop", f"the stop test's load failed: {type(exc).__name__}: {exc}", "")

        bench = stops.Bench(self.targets, self.matrix, Target(c.target_host, c.port), self.run_id, c.graceful)
        stops.each(
            "stop", cells, c.stops, lambda cell, n: stops.stop_once(bench, cell, n),
            lambda cell, n: bundle.stop_path(root, cell.key, c.graceful, n),
            lambda record: self.listener.say(outcome_line(record)), failed, skip=self.visits.dead,
        )  # fmt: skip

    # --- one visit ----------------------------------------------------------------------------------------------
    def todo(self, visit: Visit) -> int:
        return sum(1 for w in visit.work if not self.ledger.done(visit.cell, w))

    def visit(self, visit: Visit) -> None:
        """One start of a cell's server, and its repeats on it."""
        cell = visit.cell
        todo = [w for w in visit.work if not self.ledger.done(cell, w)]
        self.listener.passed(len(visit.work) - len(todo))
        if not todo or not self.visits.live([cell]):
            self.listener.passed(len(todo))  # work of a dead cell: not measured, counted as passed
            if visit.phase == "round":
                self.allowance.passed(len(todo))
            return
        if visit.phase == "round":
            self.ledger.clear_failures(cell)
        self.speed_if_due()
        throughput = visit.phase == "round"
        self.visits.visit([cell], [self.config.port], lambda s: self.repeats.on(s[0], cell, todo, throughput))

    def group_visit(self, visit: GroupVisit) -> None:
        """Every server of the group started afresh (the one drawn first on the run's port), a side-by-side window
        per scenario on them, all stopped."""
        todo = [w for w in visit.work if not self.ledger.group_done(visit, w)]
        self.listener.passed(len(visit.work) - len(todo))
        if not todo or not self.visits.live(visit.cells):
            self.listener.passed(len(todo))
            return
        self.speed_if_due()
        began = time.monotonic()
        ports = self.config.ports[: len(visit.started)]
        self.visits.visit(visit.started, ports, lambda s: self.group_rounds.on(s, visit, todo))
        self.allowance.group_seconds.setdefault(visit.key, []).append(time.monotonic() - began)

    def speed_if_due(self) -> None:
        """The first visit of a round or of the sweep times the machine first, before its server starts."""
        if self.speed_due:
            self.sample_speed()
            self.speed_due = False

    def sample_speed(self) -> None:
        """The machine-speed index's next sample, and a burst of the probes that set the run's full speed."""
        self.ledger.save(speed=self.instrument.sample_speed(self.manifest.speed))

    def calibrate(self) -> None:
        from lab.run.calibration import calibrate

        self.listener.say("calibrating the load generator on the path every result takes")
        try:
            record = calibrate(self.config, self.matrix, self.targets, self.loads, self.instrument, self.listener.say)
        except (LoadError, ServerError) as exc:
            self.listener.say(f"calibration failed (charts will have no ceiling line): {exc}")
            return
        if record is not None:
            self.ledger.calibrated(record)

    def write_outputs(self, drawn: bool = True) -> bool:
        """Every output of the bundle (lab/report/outputs.py), its one analysis kept for the headline."""
        root = self.ledger.root
        out = outputs.write(root, self.matrix, drawn)
        self.analysis = out.analysis
        if out.stops:
            self.listener.say(f"stops under load: {', '.join(str(p) for p in out.stops)}")
        if out.skipped == "interrupted":
            self.listener.say(f"summary.csv written; charts and report: python -m lab plot {root}")
        elif out.skipped:
            self.listener.say(f"{out.skipped}, so no charts")
        elif out.error:
            self.listener.say(f"charts failed: {out.error}; rerun: python -m lab plot {root}")
            return False
        else:
            self.listener.say(f"{len(out.charts)} chart files, {out.pages[0]} and {out.pages[1]}")
        return True
