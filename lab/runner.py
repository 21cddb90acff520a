"""Run a configuration's phases (lab/config.py) through the two backends, and keep every result.

Every repeat is written as soon as it ends. A cell whose server fails to start, dies or hangs is recorded with its
log tail and left out of the rest of the run (a resumed run tries it again); the matrix goes on. A lost service
(the target agent, the Locust master or a worker) stops the run: the manifest says what was lost and when, and
`--resume RUN_ID` continues it once the service is back. Interrupted (Ctrl-C, SIGTERM), the current server is
stopped, what is on disk stays valid, and `--resume` skips what is done.

How warm-up is kept honest: every round starts each cell's server afresh, and every repeat has the same warm-up on
its own connections before its window opens, so no cell is measured warmer than another.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import interrupts
from core.host import ROOT, UsageError
from lab import bundle, fingerprint, stats, sweep
from lab.bundle import CellInfo, Failure, Manifest, Part, Repeat, Skipped, Speed, SweepRates
from lab.config import RunConfig
from lab.measure import Measure, Refereed, health
from lab.results import rough_referee_ratio, speed_shares
from lab.verdict import REFEREE_ABOVE, REFEREE_SHARE, judge
from loadtests.load import LoadBackend, LoadError, LoadSideLostError
from servers.matrix import Cell
from servers.target import RunningServer, ServerError, TargetBackend, TargetSideLostError

DEFAULT_RESULTS = ROOT / "results"
HUNG_STOP = 3.0  # seconds a server that stopped answering gets to stop on SIGTERM before SIGKILL
# A disturbed throughput repeat (lab/measure.py: conditions) is measured again at most RERUNS times while the run
# would still end within its time budget (the rounds' remaining repeats and the sweep kept free); without a budget,
# at most RERUNS_PER_RUN times in a run. The sweep's repeats are
# flagged, not measured again: latency at a rate is read across rates, not from one window.
RERUNS = 2
RERUNS_PER_RUN = 20
# wrk runs once per point after its first repeat; one 2-s run carries the machine's speed noise of its window (the
# paired Locust/wrk log-ratio spread 0.14-0.20 in probes: README). In each later round, wrk runs again after the
# point's repeat while Locust ÷ wrk so far (lab/results.py: rough_referee_ratio) lies outside REFEREE_SHARE-
# REFEREE_ABOVE, within REFEREE_AGAIN_SECONDS of wrk per run (the default's 2-s runs: about 15 more), budget or not:
# early in a run the budget's estimate of the rest is too high to allow anything. The point's ratio is then the
# median over wrk's runs (lab/verdict.py).
REFEREE_AGAIN_SECONDS = 45.0
PROBE_BURST = 10  # quick probes of the server CPU with each speed sample, ~50 ms apart (lab/measure.py: Measure.probe)
VISIT_SECONDS = 0.5  # a repeat's share of its cell's visit: the server's start and stop, the speed probes
SWEEP_WARMUP = 0.5  # seconds of load at the first swept rate before its window opens


def point_label(scenario: str, rate: float) -> str:
    """A scenario, or a scenario at an offered rate: json, json@2000."""
    return f"{scenario}@{rate:g}" if rate else scenario


def check_writable(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"results path {directory} is a file, not a directory; choose a directory with --results")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"results directory {directory} is not writable ({exc.strerror}); choose another with --results"
        ) from None


def new_run_dir(results: Path) -> Path:
    """results/<UTC timestamp>-<host id>, created exclusively: never an earlier run's directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    host = fingerprint.machine_id()
    for n in range(100):
        candidate = results / (f"{stamp}-{host}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise UsageError(f"cannot create a new run directory under {results}")


@contextlib.contextmanager
def holding(run_dir: Path) -> Iterator[None]:
    """One runner per run: an exclusive lock on <run>/.lock while it runs. The kernel drops the lock when its holder
    dies (even by kill -9), so a run left `running` by a dead runner can be resumed."""
    import fcntl

    with open(run_dir / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise UsageError(
                f"run {run_dir.name} is being run right now (pid {lock.read().strip() or '?'}); wait for it or stop it"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def round_order(run_id: str, number: int, cells: list[str]) -> list[str]:
    """A round's cell order: a shuffle seeded by the run and the round, so a resumed run keeps it."""
    order = list(cells)
    random.Random(f"{run_id}/{number}").shuffle(order)
    return order


# --- progress ----------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    total: int
    write: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    done: int = 0
    measured: int = 0  # repeats measured in this session (for the ETA)
    started: float = field(default_factory=time.monotonic)
    # In compose, Ctrl-C ends the output of the services at once, so every line says how to continue: the last line
    # a user sees then does.
    resume_hint: str = ""

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        eta = f"ETA {fmt(elapsed / self.measured * max(self.total - self.done, 0))}" if self.measured else "ETA ?"
        self.write(f"[{self.done}/{self.total}] {text} | elapsed {fmt(elapsed)}, {eta}{self.resume_hint}")


def fmt(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# --- the run -----------------------------------------------------------------------------------------------------


class RunInterruptedError(Exception):
    """SIGTERM or Ctrl-C."""


class CellDiedError(Exception):
    """The cell's server died or stopped answering during its load."""


@dataclass
class Runner:
    config: RunConfig
    root: Path
    run_id: str
    targets: TargetBackend
    loads: LoadBackend
    progress: Progress | None = None
    manifest: Manifest | None = None
    dead: set[str] = field(default_factory=set)  # cells that failed in this session: left out of its later phases
    referees: dict[tuple[str, str], Refereed] = field(default_factory=dict)
    reruns: int = 0
    referee_again_seconds: float = 0.0  # spent on wrk in later rounds
    overheads: list[float] = field(default_factory=list)
    speed_due: bool = False  # set at each round and the sweep: the next cell visited first times the machine
    known_capacities: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.measure = Measure(self.config, self.run_id, self.loads, tuple(self.targets.cpus))

    # manifest --------------------------------------------------------------------------------------------------
    def start_manifest(self, resumed: Manifest | None) -> None:
        machine = fingerprint.machine()
        c = self.config
        wiring = "on this machine" if not (c.target_agent or c.locust_master) else (
            f"through the target agent {c.target_agent} and the Locust master {c.locust_master}"
        )  # fmt: skip
        part = Part(
            started=time.time(), ended=None, status="running", machine_id=machine.machine_id,
            container=machine.container, uid=os.getuid(), wiring=wiring, note=None,
        )  # fmt: skip
        self.manifest = Manifest(
            schema_version=bundle.SCHEMA_VERSION,
            kind="manifest",
            run_id=self.run_id,
            status="running",
            started=resumed.started if resumed else part.started,
            ended=None,
            config=self.config,
            machine=machine,
            versions=fingerprint.versions(),
            lab_commit=fingerprint.lab_commit(),
            skipped=[Skipped(key=c.key, scenario=s, reason=r) for c, s, r in self.config.skipped()],
            failures=[],
            parts=[*(ended(p) for p in (resumed.parts if resumed else [])), part],
            rounds=list(resumed.rounds) if resumed else [],
            sweep=dict(resumed.sweep) if resumed else {},
            extra_rule=extra_rule(self.config),
            speed=resumed.speed if resumed else None,
        )
        self.save_manifest()

    def save_manifest(self, **changes: Any) -> None:
        assert self.manifest is not None
        failures = sorted(p.stem for p in (self.root / "failures").glob("*.json"))
        self.manifest = self.manifest.model_copy(update={"failures": failures, **changes})
        bundle.write_record(self.root / "manifest.json", self.manifest)

    def end_part(self, status: str, note: str | None) -> None:
        assert self.manifest is not None
        parts = list(self.manifest.parts)
        parts[-1] = parts[-1].model_copy(update={"ended": time.time(), "status": status, "note": note})
        self.save_manifest(status=status, ended=time.time(), parts=parts)

    # failures --------------------------------------------------------------------------------------------------
    def fail(self, cell: Cell, scenario: str | None, phase: str, error: str, log_tail: str) -> None:
        record = Failure(
            schema_version=bundle.SCHEMA_VERSION,
            kind="failure",
            run_id=self.run_id,
            key=cell.key,
            cell=CellInfo(**vars(cell)),
            scenario=scenario,
            phase=phase,  # type: ignore[arg-type]
            error=error,
            log_tail=log_tail,
            at=time.time(),
        )
        bundle.write_record(bundle.failure_path(self.root, cell.key, scenario), record)
        self.dead.add(cell.key)
        self.save_manifest()
        self.line(f"FAILED {cell.key} {scenario or ''} ({phase}): {error.splitlines()[0][:200]}")

    def line(self, text: str) -> None:
        assert self.progress
        self.progress.line(text)

    # what is on disk -------------------------------------------------------------------------------------------
    def existing(self, cell: Cell, scenario: str, rate: float, number: int) -> Repeat | None:
        path = bundle.repeat_path(self.root, cell.key, scenario, number, rate)
        if not path.exists():
            return None
        try:
            return bundle.read_model(path, "repeat")
        except bundle.BundleError:
            return None

    def done(self, cell: Cell, scenario: str, rate: float, number: int) -> bool:
        found = self.existing(cell, scenario, rate, number)
        return found is not None and found.ok

    def ok_repeats(self, cell: Cell, scenario: str) -> list[Repeat]:
        """The point's ok throughput repeats."""
        found = []
        for path in (self.root / "runs").glob(f"{cell.key}__{scenario}__r*.json"):
            with contextlib.suppress(bundle.BundleError):
                record = bundle.read_model(path, "repeat")
                if record.ok and record.load is not None:
                    found.append(record)
        return found

    def ok_rps(self, cell: Cell, scenario: str) -> dict[int, float]:
        """RPS of the point's ok throughput repeats, by round."""
        return {r.repeat: r.load.rps for r in self.ok_repeats(cell, scenario) if r.load}

    def known_referee(self, cell: Cell, scenario: str) -> Refereed | None:
        """The referee measured for this point earlier in the run (also before a resume), if any."""
        if (cell.key, scenario) in self.referees:
            return self.referees[(cell.key, scenario)]
        for path in sorted((self.root / "runs").glob(f"{cell.key}__{scenario}__r*.json")):
            with contextlib.suppress(bundle.BundleError):
                record = bundle.read_model(path, "repeat")
                if record.referee is not None:
                    return Refereed(record.referee, "", record.referee_cost)
        return None

    def wrk_again(self, cell: Cell, scenario: str) -> bool:
        """Whether wrk runs again after this round's repeat of the point: it ran before (a repeat on disk carries it),
        Locust ÷ wrk so far lies outside REFEREE_SHARE-REFEREE_ABOVE, and REFEREE_AGAIN_SECONDS has room for one more
        run."""
        c = self.config
        if not c.referee_seconds or self.referee_again_seconds + c.referee_seconds + 1.0 > REFEREE_AGAIN_SECONDS:
            return False
        ratio = rough_referee_ratio(self.ok_repeats(cell, scenario))  # None until wrk has run on the point
        return ratio is not None and not REFEREE_SHARE <= ratio <= REFEREE_ABOVE

    # one cell, one visit ---------------------------------------------------------------------------------------
    def visit(self, cell: Cell, work: list[tuple[str, float, int, float]]) -> None:
        """Start the cell's server, measure each (scenario, rate, repeat number, warm-up) on it, stop it."""
        died: tuple[str, str] | None = None
        started = False
        if self.speed_due:  # before the server starts, while the machine is quiet
            self.sample_speed()
            self.speed_due = False
        try:
            with self.targets.serve(cell, self.config.port) as server:
                started = True
                try:
                    for scenario, rate, number, warmup in work:
                        self.one(server, cell, scenario, rate, number, warmup)
                except CellDiedError as exc:
                    died = (str(exc), point_label(scenario, rate))
                    tail = server.log_tail()
                    with contextlib.suppress(ServerError):
                        server.stop(HUNG_STOP)
                    self.fail(cell, died[1], "load", died[0], tail)
                    return
                code = server.stop()
                if code != 0:
                    self.fail(cell, None, "stop", f"server exited {code} after SIGTERM", server.log_tail())
        except TargetSideLostError:
            raise
        except ServerError as exc:
            message, _, log_tail = str(exc).partition("\n")
            self.fail(cell, None, "stop" if started else "start", message, log_tail)

    def one(self, server: RunningServer, cell: Cell, scenario: str, rate: float, number: int, warmup: float) -> None:
        """One repeat; the first ok one of a closed point is followed by the referee on the same warm server, right
        after it, and carries it (its verdict then judged with it); a later one too while the point needs wrk again
        (wrk_again). CellDiedError when the server died or hung."""
        c, progress = self.config, self.progress
        assert progress
        referee = (self.known_referee(cell, scenario) if not rate else None) or Refereed(None)
        first = not rate and (cell.key, scenario) not in self.referees and referee.wrk is None
        duration = c.sweep_seconds if rate else c.duration
        earlier: list[str] = []
        while True:
            began = time.monotonic()
            record = self.measure.repeat(server, cell, scenario, rate, number, referee, warmup, duration, earlier)
            took = time.monotonic() - began
            self.overheads.append(took - warmup - duration)
            cond = record.conditions
            if rate or not (cond and cond.disturbed and len(earlier) < RERUNS and self.may_rerun(took)):
                break
            self.reruns += 1
            got = f"{record.load.rps:,.0f} RPS, " if record.load else ""
            earlier.append(f"attempt {len(earlier) + 1}: {got}{cond.note}")
            self.line(f"{cell.key} {point_label(scenario, rate)} #{number}: disturbed ({cond.note}); measuring again")
        measured = record.ok and record.load and record.server
        again = not first and not rate and measured and self.wrk_again(cell, scenario)
        if (first and measured) or again:
            referee = self.measure.referee(server, scenario) if c.referee_seconds else Refereed(None, "not run")
            if first:
                self.referees[(cell.key, scenario)] = referee
            else:
                self.referee_again_seconds += c.referee_seconds + 1.0
            if referee.wrk:
                said = f"again in round {number}, " if again else ""
                self.line(f"{cell.key} {scenario}: wrk {said}{referee.wrk.rps:,.0f} RPS ({referee.wrk.seconds:.0f} s)")
            if first or referee.wrk:  # (a later run that failed leaves the repeat judged with the first)
                record = record.model_copy(
                    update={
                        "referee": referee.wrk,
                        "referee_cost": referee.cost,
                        "verdict": judge(record.load, record.server, referee.wrk, referee.why),
                        "conditions": record.conditions.model_copy(update={"referee_speed": referee.speed})
                        if record.conditions
                        else None,
                    }
                )
        bundle.write_record(bundle.repeat_path(self.root, cell.key, scenario, number, rate), record)
        progress.done += 1
        progress.measured += 1
        label = point_label(scenario, rate)
        if not record.ok or record.load is None:
            self.line(f"{cell.key} {label} #{number}: FAILED: {record.failure}")
            self.loads.check()  # a lost worker or master stops the run here, not one failed repeat at a time
            problem = health(server)
            if problem:
                raise CellDiedError(f"{record.failure}" if record.failure else problem)
            return
        result, verdict = record.load, record.verdict
        flags = f" limit={verdict.limit}" if verdict and verdict.limit not in ("server", "offered") else ""
        flags += " SHORT-OF-RATE" if result.rate_shortfall else ""
        flags += f" errors={sum(result.errors.values())}" if result.errors else ""
        p99 = result.latency.percentiles_us.get("p99", 0) / 1000
        self.line(f"{cell.key} {label} #{number}: {result.rps:,.0f} RPS, p99 {p99:.2f} ms{flags}")

    def may_rerun(self, seconds: float) -> bool:
        """Whether something disturbed that takes `seconds` may be measured again: with a budget, while the run would
        still end within it; without one, up to RERUNS_PER_RUN times."""
        c, progress = self.config, self.progress
        if not c.budget_seconds:
            return self.reruns < RERUNS_PER_RUN
        assert self.manifest is not None and progress is not None
        repeats_left = max(progress.total - progress.done - 1, 0)
        per_repeat = c.warmup + c.duration + self.overhead() + VISIT_SECONDS
        referees_left = sum(
            1 for key in c.cells for s in c.scenarios_of(c.matrix.cell_from_key(key)) if (key, s) not in self.referees
        )
        rest = repeats_left * per_repeat + referees_left * (c.referee_seconds + 1.0)
        rest += self.sweep_estimate(self.manifest.sweep) if self.manifest.sweep else self.sweep_guess()
        return time.time() + seconds + rest <= self.manifest.started + c.budget_seconds

    # the phases ------------------------------------------------------------------------------------------------
    def throughput_round(self, number: int) -> None:
        c = self.config
        assert self.manifest is not None
        rounds = list(self.manifest.rounds)
        if len(rounds) < number:
            rounds.append(round_order(self.run_id, number, c.cells))
            self.save_manifest(rounds=rounds)
        self.run_round(number, rounds[number - 1])

    def sample_speed(self) -> None:
        """The machine-speed index's next sample, and a burst of the quick probes that set the run's full speed (so
        that the first repeats are judged against more than their own probes)."""
        assert self.manifest is not None
        self.save_manifest(speed=measure_speed(self.config, self.manifest.speed))
        for _ in range(PROBE_BURST):
            self.measure.probe()
            time.sleep(0.05)

    def run_round(self, number: int, order: list[str]) -> None:
        c, progress = self.config, self.progress
        assert progress
        self.speed_due = True
        for key in order:
            cell = c.matrix.cell_from_key(key)
            todo = [s for s in c.scenarios_of(cell) if not self.done(cell, s, 0.0, number)]
            progress.done += len(c.scenarios_of(cell)) - len(todo)
            if not todo:
                continue
            if key in self.dead:
                progress.done += len(todo)
                continue
            self.clear_failures(cell)
            self.visit(cell, [(s, 0.0, number, c.warmup) for s in todo])

    def clear_failures(self, cell: Cell) -> None:
        """A cell tried again (a resumed run) starts without its earlier failure records."""
        for path in (self.root / "failures").glob(f"{cell.key}*.json"):
            path.unlink(missing_ok=True)

    def extra_rounds(self, deadline: float) -> None:
        """More repeats for the cells whose comparisons are still undecided, while time remains."""
        c, progress = self.config, self.progress
        assert self.manifest is not None and progress
        number = max(c.repeats, len(self.manifest.rounds))
        while number < c.max_repeats:
            undecided = self.undecided() - self.dead
            per_round = self.seconds_per_visit() * len(undecided)
            if not undecided or time.time() + per_round > deadline:
                return
            number += 1
            order = round_order(self.run_id, number, sorted(undecided))
            self.save_manifest(rounds=[*self.manifest.rounds, order])
            progress.total += sum(len(c.scenarios_of(c.matrix.cell_from_key(k))) for k in order)
            self.line(f"extra round {number}: {len(order)} cells whose comparisons are still undecided")
            self.run_round(number, order)

    def undecided(self) -> set[str]:
        c = self.config
        cells = {k: vars(c.matrix.cell_from_key(k)) for k in c.cells}
        found: set[str] = set()
        for scenario in c.scenarios:
            repeats = {k: self.ok_repeats(c.matrix.cell_from_key(k), scenario) for k in c.cells}
            rps = {k: {r.repeat: r.load.rps for r in found if r.load} for k, found in repeats.items()}
            noise = stats.blocked_noise(rps, {k: speed_shares(found) for k, found in repeats.items()})
            found |= stats.undecided(stats.comparisons(scenario, cells, rps, noise))
        return found

    def seconds_per_visit(self) -> float:
        """How long one cell's visit takes, measured in this run so far (a guess before anything ran)."""
        c, progress = self.config, self.progress
        assert progress
        per_repeat = (time.monotonic() - progress.started) / progress.measured if progress.measured else 0.0
        return max(per_repeat, c.warmup + c.duration + 1.0) * len(c.scenarios) + 1.0

    def choose_rates(self) -> dict[str, SweepRates]:
        c = self.config
        chosen: dict[str, SweepRates] = {}
        for scenario in c.scenarios:
            if c.rates:
                chosen[scenario] = SweepRates(common=sorted(c.rates), fast=[], chosen_from="--rate")
                continue
            capacities = self.capacities(scenario)
            common, fast = sweep.rates(capacities)
            if common:
                chosen[scenario] = SweepRates(common=common, fast=fast, chosen_from="the run's throughput figures")
        return chosen

    def capacities(self, scenario: str) -> dict[str, float]:
        """Each live cell's capacity in the scenario: its median RPS, or its referee's when that is higher."""
        c = self.config
        found = {}
        for key in c.cells:
            cell = c.matrix.cell_from_key(key)
            rps = self.ok_rps(cell, scenario)
            if rps and key not in self.dead:
                referee = self.known_referee(cell, scenario)
                found[key] = max(statistics.median(rps.values()), referee.wrk.rps if referee and referee.wrk else 0.0)
        return found

    def rates(self) -> dict[str, SweepRates]:
        """The sweep's rates: chosen once, from the throughput phase's figures, and kept in the manifest."""
        assert self.manifest is not None
        rates = self.manifest.sweep or self.choose_rates()
        self.save_manifest(sweep=rates)
        self.known_capacities = {s: self.capacities(s) for s in rates}  # which cells run the fast-only rates
        return rates

    def sweep_work(self, rates: dict[str, SweepRates], cell: Cell) -> list[tuple[str, float, int, float]]:
        """A cell's sweep: (scenario, rate, repeat 1, warm-up before the first rate) for each rate it runs."""
        work = []
        for scenario in self.config.scenarios_of(cell):
            chosen = rates.get(scenario)
            if chosen is None:
                continue
            capacity = self.known_capacities.get(scenario, {}).get(cell.key, 0.0)
            mine = chosen.common + [r for r in chosen.fast if sweep.serves(capacity, r)]
            work += [(scenario, rate, 1, SWEEP_WARMUP if i == 0 else 0.0) for i, rate in enumerate(mine)]
        return work

    def sweep_phase(self, rates: dict[str, SweepRates]) -> None:
        c, progress = self.config, self.progress
        assert self.manifest is not None and progress
        for scenario, chosen in rates.items():
            self.line(
                f"sweep {scenario}: common rates {', '.join(f'{r:g}' for r in chosen.common)}"
                + (f"; fast-only {', '.join(f'{r:g}' for r in chosen.fast)}" if chosen.fast else "")
                + f" ({chosen.chosen_from})"
            )
        order = round_order(self.run_id, 0, c.cells)
        plan = {key: self.sweep_work(rates, c.matrix.cell_from_key(key)) for key in order}
        progress.total += sum(len(work) for work in plan.values())  # the whole sweep, so the ETA counts it
        self.speed_due = True
        for key, work in plan.items():
            cell = c.matrix.cell_from_key(key)
            todo = [w for w in work if not self.done(cell, w[0], w[1], 1)]
            progress.done += len(work) - len(todo)
            if todo and key not in self.dead:
                self.visit(cell, todo)
            elif key in self.dead:
                progress.done += len(todo)

    def run(self, resumed: Manifest | None = None) -> int:
        c = self.config
        hint = " | after Ctrl-C: RESUME=last docker compose up" if c.target_agent else ""
        total = sum(len(c.scenarios_of(x)) for x in c.cell_list) * c.repeats
        self.progress = self.progress or Progress(total=total, resume_hint=hint)
        self.start_manifest(resumed)
        assert self.manifest is not None
        self.line(
            f"run {self.run_id}: {len(c.cells)} cells x {len(c.scenarios)} scenarios, {c.repeats} rounds; "
            f"server CPUs {c.server_cpus}, load CPUs {c.load_cpus} with {c.load_workers} Locust worker(s)"
        )
        status, note = "complete", None
        with interrupts.raising(RunInterruptedError):
            try:
                self.sample_speed()
                if c.calibrate and not self.calibrated():
                    self.run_calibration()
                for number in range(1, c.repeats + 1):
                    self.throughput_round(number)
                rates = self.rates() if c.sweep_seconds else {}
                if c.budget_seconds:
                    self.extra_rounds(self.manifest.started + c.budget_seconds - self.sweep_estimate(rates))
                if c.sweep_seconds:
                    self.sweep_phase(rates)
            except RunInterruptedError as exc:
                status, note = "interrupted", f"by {exc}"
                self.line(f"interrupted by {exc}; resume with --resume {self.run_id}")
            except (TargetSideLostError, LoadSideLostError) as exc:
                status, note = "stopped", f"lost: {str(exc).splitlines()[0]}"
                self.line(f"STOPPED: {note}; resume with --resume {self.run_id} once it is back")
            finally:
                self.measure.close()
        self.end_part(status, note)
        charts_ok = self.write_outputs(charts=status != "interrupted")  # interrupted: be quick, a resume redraws
        if status == "interrupted":
            return 130
        assert self.manifest is not None
        return 1 if status != "complete" or self.manifest.failures or not charts_ok else 0

    def calibrated(self) -> bool:
        """A valid calibration.json is on disk (a resumed run measures a missing or damaged one again)."""
        path = self.root / "calibration.json"
        try:
            bundle.read_model(path, "calibration")
        except bundle.BundleError:
            path.unlink(missing_ok=True)
            return False
        return True

    def sweep_estimate(self, rates: dict[str, SweepRates]) -> float:
        """Seconds the sweep will take (kept free of extra repeats): its runs, each with the overhead measured on
        this run's repeats so far, and a server start per cell."""
        c = self.config
        if not c.sweep_seconds:
            return 0.0
        runs = sum(len(self.sweep_work(rates, cell)) for cell in c.cell_list if cell.key not in self.dead)
        return runs * (c.sweep_seconds + self.overhead()) + len(c.cells) * (SWEEP_WARMUP + 1.0)

    def sweep_guess(self) -> float:
        """The sweep's seconds before its rates are chosen: every common rate on every live point, and a quarter of
        the fast-only ones (they run on the fast cells only)."""
        c = self.config
        if not c.sweep_seconds:
            return 0.0
        live = [cell for cell in c.cell_list if cell.key not in self.dead]
        runs = sum(len(c.scenarios_of(cell)) for cell in live) * (len(sweep.LADDER) + len(sweep.FAST) / 4)
        return runs * (c.sweep_seconds + self.overhead()) + len(live) * (SWEEP_WARMUP + 1.0)

    def overhead(self) -> float:
        """Seconds a repeat takes beyond its warm-up and window (Locust's start and stop, checks, sampling)."""
        return statistics.median(self.overheads) if self.overheads else 1.0

    def write_outputs(self, charts: bool = True) -> bool:
        """summary.csv, charts, report.html and summary.md, from the bundle's one analysis as it is on disk."""
        from lab import charts as drawing
        from lab import report
        from lab.analysis import analyze
        from servers.matrix import load

        result = bundle.load_bundle(self.root)
        analysis = analyze(result, load())
        report.write_summary_csv(analysis)
        if not charts:
            self.line(f"summary.csv written; charts and report: python -m lab plot {self.root}")
            return True
        if not any(r.ok for r in result.repeats):
            self.line("no measured results, so no charts")
            return True
        try:
            drawn = drawing.render(analysis)
            pages = report.write(analysis, drawn)
        except Exception as exc:  # a chart bug must not lose the run: the bundle is already on disk
            self.line(f"charts failed: {type(exc).__name__}: {exc}; rerun: python -m lab plot {self.root}")
            return False
        self.line(f"{sum(len(c.files) for c in drawn)} chart files, {pages[0]} and {pages[1]}")
        return True

    def run_calibration(self) -> None:
        from lab.calibration import calibrate

        self.line("calibrating the load generator on the path every result takes")
        try:
            record = calibrate(self.config, self.targets, self.loads, self.measure, self.line)
        except (LoadSideLostError, TargetSideLostError):
            raise
        except (LoadError, ServerError) as exc:
            self.line(f"calibration failed (charts will have no ceiling line): {str(exc).splitlines()[0]}")
            return
        if record is not None:
            bundle.write_record(self.root / "calibration.json", record)


def ended(part: Part) -> Part:
    """An earlier part still `running` had a runner that died without a word (kill -9, a lost machine)."""
    if part.status != "running":
        return part
    return part.model_copy(update={"status": "interrupted", "note": "its runner died without ending the run"})


def extra_rule(config: RunConfig) -> str:
    if not config.budget_seconds:
        return "none: no time budget (--budget-minutes 0), so every cell has exactly its rounds"
    return (
        f"after the {config.repeats} rounds, while the run is within its {config.budget_seconds / 60:g}-minute budget "
        f"(the sweep's time kept free), another round over every cell that is in a comparison not yet significant "
        f"at 95% (lab/stats.py), up to {config.max_repeats} repeats; a throughput repeat disturbed by steal or other "
        f"work (lab/measure.py) is measured again up to {RERUNS} times while the run would still end within its "
        f"budget; the server CPU's speed during every throughput window is sampled (lab/speedometer.py) and fitted "
        f"out by the analysis; wrk runs after a point's first repeat, and again after a later round's repeat while "
        f"Locust ÷ wrk so far lies outside {REFEREE_SHARE:g}-{REFEREE_ABOVE:g} (at most {REFEREE_AGAIN_SECONDS:g} s "
        f"of such runs); the point's ratio is the median over wrk's runs"
    )


def measure_speed(config: RunConfig, earlier: Speed | None) -> Speed:
    """One more sample of the machine's speed on the first server and load CPU; the index is the median so far."""
    servers = [*(earlier.server_samples if earlier else []), fingerprint.speed(config.server_cpus[0])]
    loads = [*(earlier.load_samples if earlier else []), fingerprint.speed(config.load_cpus[0])]
    return Speed(
        workload="200,000 dict inserts of str(i) -> i * 7 % 13, best of 3, pure Python (lab/fingerprint.py); "
        "timed at the start of the run, of every round and of the sweep; the index is the median",
        server_ops=statistics.median(servers),
        load_ops=statistics.median(loads),
        server_samples=servers,
        load_samples=loads,
    )


def start_in(root: Path, config: RunConfig, targets: TargetBackend, loads: LoadBackend) -> tuple[Path, int]:
    """A new run in its new directory (new_run_dir). Returns (bundle directory, exit code)."""
    return root, Runner(config, root, root.name, targets, loads).run()


def resume(run_dir: Path, manifest: Manifest, targets: TargetBackend, loads: LoadBackend) -> tuple[Path, int]:
    """Continue an interrupted (or stopped) run with its own settings, skipping every repeat already on disk."""
    return run_dir, Runner(manifest.config, run_dir, manifest.run_id, targets, loads).run(resumed=manifest)
