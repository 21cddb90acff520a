"""What a window's figures say about the window itself: is the server alive and answering (health), what each answer
cost both sides, whether the machine disturbed it (steal, other work, the CPU's speed, an unsteady stretch), and
whether the window is whole (every worker reported, the length asked for, no empty second)."""

from __future__ import annotations

import statistics

from lab.bundle import Conditions, Cost
from loadtests.load import Load, LoadResult
from servers.launcher import probe
from servers.target import RunningServer, ServerSample

WINDOW_TOLERANCE = 0.25  # seconds, plus 5% of the duration: how far a window may stray from what was asked
STEAL_BOUND = 0.05  # a server or load CPU with more stolen than this share of the window: disturbed
# Server or load CPUs busy with other work for more than this share: disturbed. Quiet runs leave some on the load CPU
# (the kernel's network threads, the runner; docs/instrument.md); a neighbour that wants a CPU takes far more.
OTHER_BOUND = 0.25
UNSTEADY_BELOW = 0.80  # a quarter-second with fewer correct answers than this share of the median one: unsteady
# The server CPU probed below this share of the run's full speed just before or after the window: noted, not measured
# again; a probe says little about the window between, which the speedometer samples (lab/measure/speed.py).
SLOW_BELOW = 0.75


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
