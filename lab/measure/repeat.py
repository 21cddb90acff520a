"""One measurement on a running server: the referee, or a repeat with its checks, verdict and cost.

A repeat is `ok` only when the server was alive and answering before and after the window, every expected Locust
worker reported, the window is the length asked for, and every whole second of it had correct answers (a server
that hangs or dies mid-window leaves an empty second). Otherwise it is `failed`, with every reason; a failed repeat
counts in no median and no chart, and a resumed run measures it again.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from core import speed as core_speed
from lab import bundle
from lab.bundle import Conditions, Cost, Repeat, ServerFigures, Speed
from lab.config import RunConfig
from lab.measure.speed import full_speed, in_window
from lab.measure.window import Work
from lab.verdict import judge
from loadtests import referee as wrk
from loadtests.load import Load, LoadBackend, LoadError, LoadResult, RefereeResult
from servers.launcher import probe
from servers.matrix import Cell, Expected, Matrix
from servers.own_app import OwnAppError, first_answer
from servers.target import CpuGauge, RunningServer, ServerSample, Speedometer

WINDOW_TOLERANCE = 0.25  # seconds, plus 5% of the duration: how far a window may stray from what was asked
STEAL_BOUND = 0.05  # a server or load CPU with more stolen than this share of the window: disturbed
# Server or load CPUs busy with other work for more than this share: disturbed. Quiet runs leave some on the load CPU
# (the kernel's network threads, the runner; docs/instrument.md); a neighbour that wants a CPU takes far more.
OTHER_BOUND = 0.25
UNSTEADY_BELOW = 0.80  # a quarter-second with fewer correct answers than this share of the median one: unsteady
# The server CPU probed below this share of the run's full speed just before or after the window: noted, not measured
# again; a probe says little about the window between, which the speedometer samples (lab/speedometer.py).
SLOW_BELOW = 0.75
PROBE_BURST = 10  # probes of the server CPU with each speed-index sample, ~50 ms apart: the run's full speed
PROBE_SETTLE = 0.1  # seconds after a window before its probe: the server closing the window's connections is not it


def health(server: RunningServer) -> str | None:
    """None while the server runs and answers correctly, else what is wrong with it."""
    if not server.alive():
        return f"the server exited {server.exit_code}"
    return probe(server.report.host, server.port, path=server.report.ready_path, http2=server.report.protocol == "h2")


def cost(answers: float, sample: ServerSample, client_seconds: float) -> Cost:
    """Both sides' CPU per answer over a window: under Locust (a repeat) or under wrk (the referee)."""

    def per_answer(seconds: float) -> float | None:
        return round(seconds * 1e6 / answers, 2) if answers else None

    return Cost(
        server_us=per_answer(sample.cpu_seconds),
        server_cpus_us=per_answer(sample.cpus_busy_seconds),
        client_us=per_answer(client_seconds),
    )


def conditions(
    result: LoadResult,
    sample: ServerSample,
    server_cpus: tuple[int, ...],
    speed: tuple[float, float] | None = None,
    timed: list[int] | None = None,
) -> Conditions:
    """Steal, other work on the server and load CPUs, the server CPU's speed just before and after (shares of the
    run's full speed) and during the window (the speedometer's samples), and the steadiness of the window's answers:
    per quarter-second in the closed model (the server's own pace), per second in the open model (a Poisson
    schedule's quarters vary too much on their own).

    Other work on a CPU set = busy time - interrupt time - the side's own processes' CPU (the server's process tree;
    the Locust workers and master). With shared CPUs the two sides are taken together.
    """
    seconds = result.window.seconds
    lg = result.load_generator
    steal = max([*sample.cpus_steal.values(), *lg.cpu_steal.values()], default=0.0)
    master = (lg.master_utilization or 0.0) * seconds
    load_cpus = [int(c) for c in lg.cpu_busy]

    def other(busy: dict[str, float], irq: dict[str, float], own: float) -> float | None:
        if not busy or seconds <= 0:
            return None
        work = sum(busy.values()) - sum(irq.get(c, 0.0) for c in busy)
        return round(max(work * seconds - own, 0.0) / (seconds * len(busy)), 4)

    if set(server_cpus) & set(load_cpus):
        both = {**lg.cpu_busy, **sample.cpus_busy}
        irq = {**lg.cpu_irq, **sample.cpus_irq}
        other_server = other_load = other(both, irq, sample.cpu_seconds + lg.cpu_seconds + master)
    else:
        other_server = other(sample.cpus_busy, sample.cpus_irq, sample.cpu_seconds)
        other_load = other(lg.cpu_busy, lg.cpu_irq, lg.cpu_seconds + master)
    series = result.per_quarter if result.model == "closed" and result.per_quarter else result.per_second
    least = min(series) / statistics.median(series) if len(series) >= 3 and statistics.median(series) else 1.0
    unsteady = least < UNSTEADY_BELOW
    slow = speed is not None and min(speed) < SLOW_BELOW
    notes = []
    if steal >= STEAL_BOUND:
        notes.append(f"{steal:.0%} of a CPU stolen by the hypervisor")
    for side, share in (("server", other_server), ("load", other_load)):
        if share is not None and share >= OTHER_BOUND:
            notes.append(f"{share:.0%} of the {side} CPUs busy with other work")
    if slow and speed is not None:
        notes.append(f"slow: {speed_note(speed)}")
    if unsteady:
        unit = "quarter-second" if series is result.per_quarter else "second"
        notes.append(f"unsteady: a {unit} at {least:.0%} of the median")
    busy = steal >= STEAL_BOUND or any(o is not None and o >= OTHER_BOUND for o in (other_server, other_load))
    return Conditions(
        steal=round(steal, 4),
        other_server=other_server,
        other_load=other_load,
        unsteady=unsteady,
        disturbed=busy,
        note="; ".join(notes) or "quiet",
        speed_before=round(speed[0], 3) if speed else None,
        speed_after=round(speed[1], 3) if speed else None,
        speed_samples=list(timed or []),
    )


def speed_note(speed: tuple[float, float]) -> str:
    return f"the server CPU at {speed[0]:.0%} of full speed before the window, {speed[1]:.0%} after"


def window_problems(result: LoadResult, load: Load, workers: int) -> list[str]:
    problems = []
    if result.processes != workers:
        problems.append(f"{result.processes} of {workers} Locust workers reported")
    expected, got = load.duration, result.window.seconds
    if abs(got - expected) > WINDOW_TOLERANCE + 0.05 * expected:
        problems.append(f"the window lasted {got:.2f} s, not {expected:g} s")
    empty = [i + 1 for i, n in enumerate(result.per_second) if n == 0]
    if empty and result.requests:
        problems.append(f"no correct answer in second {', '.join(map(str, empty))} of the window")
    elif not result.ok:
        problems.append("no correct answer in the whole window")
    return problems


@dataclass(frozen=True)
class Refereed:
    """The referee's outcome for a point: wrk's result (None, with why, when there is none) and both sides' CPU per
    answer under wrk (the server's, to compare with its cost under Locust)."""

    wrk: RefereeResult | None
    why: str = ""
    cost: Cost | None = None
    speed: list[int] = field(default_factory=list)  # the server CPUs' speed during wrk's run (lab/speedometer.py)


@dataclass
class Measure:
    """What every measurement of a run shares: its configuration, its matrix and its load backend."""

    config: RunConfig
    matrix: Matrix
    run_id: str
    loads: LoadBackend
    server_cpus: tuple[int, ...]
    gauge: CpuGauge  # the server CPUs' speed, timed on their host (the target backend)
    speeds: list[float] = field(default_factory=list)  # every probe of the first server CPU in this run
    answers: dict[str, Expected] = field(default_factory=dict)  # your app's first correct answer per request
    speedometer: Speedometer = field(init=False)

    def __post_init__(self) -> None:
        self.speedometer = self.gauge.speedometer()

    def timed(self, start: float, end: float) -> list[int]:
        """The speedometer's samples of every server CPU between start and end, stopping it."""
        return [x for samples in self.speedometer.stop().values() for x in in_window(samples, start, end)]

    def close(self) -> None:
        self.speedometer.close()

    def probe(self, settle: float = 0.0) -> float:
        """The first server CPU's speed now (the server idle between windows), kept for the run's full speed."""
        time.sleep(settle)
        found = self.gauge.probe(self.server_cpus[0])
        self.speeds.append(found)
        return found

    def shares(self, before: float, after: float) -> tuple[float, float]:
        """Two probes as shares of the run's full speed: a high quantile of its probes so far."""
        full = full_speed(self.speeds)
        return (before / full, after / full) if full else (1.0, 1.0)

    def sample_speed(self, earlier: Speed | None) -> Speed:
        """One more sample of the machine's speed index on the first server and load CPU (the index is the median so
        far), then a burst of probes, so that the first repeats are judged against more than their own probes."""
        c = self.config
        servers = [*(earlier.server_samples if earlier else []), self.gauge.speed(c.server_cpus[0])]
        loads = [*(earlier.load_samples if earlier else []), core_speed.speed(c.load_cpus[0])]
        for _ in range(PROBE_BURST):
            self.probe()
            time.sleep(0.05)
        return Speed(
            workload="200,000 dict inserts of str(i) -> i * 7 % 13, best of 3, pure Python (core/speed.py); "
            "timed at the start of the run, of every round and of the sweep; the index is the median",
            server_ops=statistics.median(servers),
            load_ops=statistics.median(loads),
            server_samples=servers,
            load_samples=loads,
        )

    def load(self, server: RunningServer, scenario: str, rate: float, duration: float, warmup: float) -> Load:
        """The load; for a request of your own app's, against its first correct answer (OwnAppError when the first
        answer is not one: servers/own_app.py)."""
        found = self.matrix.scenario(scenario)
        if found.answer == "given":
            if scenario not in self.answers:
                self.answers[scenario] = first_answer(found, server.report.host, server.port)
            found = found.model_copy(update={"expect": self.answers[scenario]})
        return self.config.load(server.url, found, rate, duration, warmup, server.report.protocol)

    def referee(self, server: RunningServer, scenario: str) -> Refereed:
        """wrk on this server and scenario (closed model, the run's connections), with the server sampled meanwhile:
        its result and both sides' CPU per answer, or why there is none."""
        spec = self.load(server, scenario, 0.0, self.config.referee_seconds, 0.0)
        if not wrk.can_referee(spec):
            return Refereed(None, f"wrk cannot replay {scenario}")
        self.probe()  # before and after wrk too: every probe of the run sets its full speed
        server.sample_open()
        self.speedometer.start()
        started = time.time()
        try:
            found = self.loads.referee(spec)
        except LoadError as exc:
            server.sample_close(0.0, 0.0)
            self.speedometer.stop()
            return Refereed(None, f"{exc}: {exc.log_tail.strip()[:200]}" if exc.log_tail.strip() else str(exc))
        except BaseException:
            server.sample_close(0.0, 0.0)
            self.speedometer.stop()
            raise
        ended = time.time()
        sample = server.sample_close(started, ended)
        timed = self.timed(started, ended)
        if found is None:
            return Refereed(None, ("h2load" if spec.http == "h2" else "wrk") + " is not installed")
        self.probe(PROBE_SETTLE)
        wrk_cpu = found.cpu_utilization * found.threads * found.seconds
        return Refereed(found, "", cost(found.rps * found.seconds, sample, wrk_cpu), timed)

    def repeat(
        self, server: RunningServer, cell: Cell, work: Work, referee: Refereed, earlier: list[str] | None = None
    ) -> Repeat:
        """One measured window on the running server, checked before and after, judged with the point's referee so
        far (the closed model's)."""
        rate = work.rate
        record = {
            "schema_version": bundle.SCHEMA_VERSION, "kind": "repeat", "run_id": self.run_id, "key": cell.key,
            "cell": cell, "scenario": work.scenario, "offered_rps": rate or None, "repeat": work.number,
            "referee": None, "referee_cost": None,  # `carrying` adds the referee to the repeat it followed
            "attempt": 1 + len(earlier or []),
            "earlier": list(earlier or []),
        }  # fmt: skip
        before = health(server)
        if before:
            return failed(record, f"before the window: {before}")
        try:
            spec = self.load(server, work.scenario, rate, work.duration, work.warmup)
        except OwnAppError as exc:  # a wrong first answer: an error, measured as none
            return failed(record, str(exc))
        speed_before = self.probe()
        server.sample_open()
        if not rate:  # the open model's latency would carry the sampler's bursts
            self.speedometer.start()
        try:
            result = self.loads.run(spec)
        except LoadError as exc:
            server.sample_close(0.0, 0.0)  # stops the sampling; no figures without a window
            self.speedometer.stop()
            return failed(record, f"load: {str(exc)[:300]}", health=health(server))
        except BaseException:
            server.sample_close(0.0, 0.0)
            self.speedometer.stop()
            raise
        sample = server.sample_close(result.window.start, result.window.end)
        timed = self.timed(result.window.start, result.window.end) if not rate else []
        speed = self.shares(speed_before, self.probe(PROBE_SETTLE))
        problems = window_problems(result, spec, self.loads.workers)
        after = health(server)
        if after:
            problems.append(f"after the window: {after}")
        figures = ServerFigures(
            cpus=list(self.server_cpus), startup_seconds=server.report.startup_seconds, **sample.model_dump()
        )
        return Repeat(
            **record,
            status="failed" if problems else "ok",
            failure="; ".join(problems) or None,
            load=result,
            server=figures,
            verdict=judge(result, sample, referee.wrk if not rate else None, referee.why if not rate else ""),
            cost=cost(result.ok, sample, result.load_generator.cpu_seconds),
            conditions=conditions(result, sample, self.server_cpus, speed, timed),
        )

    @staticmethod
    def carrying(record: Repeat, referee: Refereed) -> Repeat:
        """The repeat wrk ran right after, carrying wrk's result and cost, judged again with it."""
        assert record.load is not None and record.server is not None
        conditions = (
            record.conditions.model_copy(update={"referee_speed": referee.speed}) if record.conditions else None
        )
        return record.model_copy(
            update={
                "referee": referee.wrk,
                "referee_cost": referee.cost,
                "verdict": judge(record.load, record.server, referee.wrk, referee.why),
                "conditions": conditions,
            }
        )


def failed(record: dict, why: str, health: str | None = None) -> Repeat:
    return Repeat(
        **record,
        status="failed",
        failure=why + (f"; {health}" if health else ""),
        load=None,
        server=None,
        verdict=None,
        cost=None,
        conditions=None,
    )
