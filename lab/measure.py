"""One measurement on a running server: the referee, or a repeat with its checks, verdict and cost.

A repeat is `ok` only when the server was alive and answering before and after the window, every expected Locust
worker reported, the window is the length asked for, and every whole second of it had correct answers (a server
that hangs or dies mid-window leaves an empty second). Otherwise it is `failed`, with every reason; a failed repeat
counts in no median and no chart, and a resumed run measures it again.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from lab import bundle
from lab.bundle import CellInfo, Conditions, Cost, Repeat, ServerFigures
from lab.config import RunConfig
from lab.verdict import judge
from loadtests import referee as wrk
from loadtests.load import Load, LoadBackend, LoadError, LoadResult, LoadSideLostError, RefereeResult
from servers.launcher import probe
from servers.matrix import Cell
from servers.target import RunningServer, ServerSample

WINDOW_TOLERANCE = 0.25  # seconds, plus 5% of the duration: how far a window may stray from what was asked
STEAL_BOUND = 0.05  # a server or load CPU with more stolen than this share of the window: disturbed
# Server or load CPUs busy with other work for more than this share: disturbed. On the 2-core VMs measured here the
# load CPU carries 2-17% of such work in quiet runs (the kernel's network threads, the runner, containerd: median 8%,
# 90th percentile 12% over a default run's repeats); a neighbour that wants a CPU takes far more.
OTHER_BOUND = 0.25
UNSTEADY_BELOW = 0.80  # a whole second with fewer correct answers than this share of the median second: unsteady


def health(server: RunningServer) -> str | None:
    """None while the server runs and answers correctly, else what is wrong with it."""
    if not server.alive():
        return f"the server exited {server.exit_code}"
    return probe("127.0.0.1", server.port)


def cost(answers: float, sample: ServerSample, client_seconds: float) -> Cost:
    """Both sides' CPU per answer over a window: under Locust (a repeat) or under wrk (the referee)."""

    def per_answer(seconds: float) -> float | None:
        return round(seconds * 1e6 / answers, 2) if answers else None

    return Cost(
        server_us=per_answer(sample.cpu_seconds),
        server_cpus_us=per_answer(sample.cpus_busy_seconds),
        client_us=per_answer(client_seconds),
    )


def conditions(result: LoadResult, sample: ServerSample, server_cpus: tuple[int, ...]) -> Conditions:
    """Steal, other work on the server and load CPUs, and the steadiness of the window's per-second answers.

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
    per_second = result.per_second
    unsteady = len(per_second) >= 3 and min(per_second) < UNSTEADY_BELOW * statistics.median(per_second)
    notes = []
    if steal >= STEAL_BOUND:
        notes.append(f"{steal:.0%} of a CPU stolen by the hypervisor")
    for side, share in (("server", other_server), ("load", other_load)):
        if share is not None and share >= OTHER_BOUND:
            notes.append(f"{share:.0%} of the {side} CPUs busy with other work")
    if unsteady:
        notes.append(f"unsteady: a second at {min(per_second) / statistics.median(per_second):.0%} of the median")
    return Conditions(
        steal=round(steal, 4),
        other_server=other_server,
        other_load=other_load,
        unsteady=unsteady,
        disturbed=steal >= STEAL_BOUND or any(o is not None and o >= OTHER_BOUND for o in (other_server, other_load)),
        note="; ".join(notes) or "quiet",
    )


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


@dataclass
class Measure:
    """What every measurement of a run shares: its configuration and its two backends."""

    config: RunConfig
    run_id: str
    loads: LoadBackend
    server_cpus: tuple[int, ...]

    def load(self, server: RunningServer, scenario: str, rate: float, duration: float, warmup: float) -> Load:
        c = self.config
        return Load(
            target=server.url, scenario=scenario, users=c.users, duration=duration, rate=rate, client=c.client,
            warmup=warmup, arrivals=c.arrivals, max_connections=c.max_connections,
        )  # fmt: skip

    def referee(self, server: RunningServer, scenario: str) -> Refereed:
        """wrk on this server and scenario (closed model, the run's connections), with the server sampled meanwhile:
        its result and both sides' CPU per answer, or why there is none."""
        spec = self.load(server, scenario, 0.0, self.config.referee_seconds, 0.0)
        if not wrk.can_referee(spec):
            return Refereed(None, f"wrk cannot replay {scenario}")
        server.sample_open()
        started = time.time()
        try:
            found = self.loads.referee(spec)
        except LoadSideLostError:
            server.sample_close(0.0, 0.0)
            raise
        except LoadError as exc:
            server.sample_close(0.0, 0.0)
            return Refereed(None, f"wrk failed: {str(exc).splitlines()[0][:200]}")
        sample = server.sample_close(started, time.time())
        if found is None:
            return Refereed(None, "wrk is not installed")
        wrk_cpu = found.cpu_utilization * found.threads * found.seconds
        return Refereed(found, "", cost(found.rps * found.seconds, sample, wrk_cpu))

    def repeat(
        self,
        server: RunningServer,
        cell: Cell,
        scenario: str,
        rate: float,
        number: int,
        referee: Refereed,
        warmup: float,
        duration: float,
        earlier: list[str] | None = None,
    ) -> Repeat:
        """One measured window on the running server, checked before and after."""
        spec = self.load(server, scenario, rate, duration, warmup)
        record = {
            "schema_version": bundle.SCHEMA_VERSION, "kind": "repeat", "run_id": self.run_id, "key": cell.key,
            "cell": CellInfo(**vars(cell)), "scenario": scenario, "offered_rps": rate or None, "repeat": number,
            "referee": None, "referee_cost": None,  # the runner adds the referee to the repeat it followed
            "attempt": 1 + len(earlier or []),
            "earlier": list(earlier or []),
        }  # fmt: skip
        before = health(server)
        if before:
            return failed(record, f"before the window: {before}")
        server.sample_open()
        try:
            result = self.loads.run(spec)
        except LoadSideLostError:
            server.sample_close(0.0, 0.0)
            raise
        except LoadError as exc:
            server.sample_close(0.0, 0.0)  # stops the sampling; no figures without a window
            return failed(record, f"load: {str(exc).splitlines()[0][:300]}", health=health(server))
        except BaseException:
            server.sample_close(0.0, 0.0)
            raise
        sample = server.sample_close(result.window.start, result.window.end)
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
            conditions=conditions(result, sample, self.server_cpus),
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
