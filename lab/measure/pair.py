"""An A/B run's pair rounds: both variants of a cell running at once on the server CPUs, loaded side by side.

Why: this machine's CPU changes speed within a second (docs/method.md), so two windows measured one after the other
differ about as much as any two. Measured in the same seconds on the same CPUs, A and B see the same machine.
Together (the default), both servers are loaded all the time and the kernel shares the server CPUs between them:
each server starts a session of its own, so it is an autogroup of its own and the scheduler shares the CPUs between
the two servers, not between their threads. Each then answers in proportion to how little CPU an answer costs it, so
B ÷ A of the answers is A's CPU per answer over B's: throughput's ratio at saturation. In slices, the load goes to one
server at a time in turns of `slice_seconds`; the first part of each turn is not counted. Measured here, together
was the more precise per second of measuring (docs/method.md#ab-runs).

Each pair round starts both servers afresh: one start of a server runs at a speed of its own (its memory layout, its
hash seed), so a single start of A against a single start of B would compare two starts as much as two variants.
The verdict's interval is therefore over the rounds (lab/stats.py: side_by_side), and a window's own, much narrower,
interval is kept only to show how much of the noise is the starts'.

A window compares costs only while the server CPUs are saturated: when something else (the client, short of CPU)
sets the pace, B ÷ A reads the client's order of service as much as the servers' costs (measured here: a window whose
load CPU a neighbour took half of gave 1.02 and 1.02 in an A/A, against 0.99 to 1.01 around it). Such a window is
measured again, up to twice; one that stays so is kept and flagged, and the verdict says how many there were.
"""

from __future__ import annotations

import math
import statistics

from lab import bundle
from lab.bundle import PairWindow, ServerFigures
from lab.measure.repeat import Measure, conditions, health, window_problems
from lab.measure.window import Work
from lab.run.plan import PairVisit
from loadtests.load import LoadError, PairResult, SideResult
from servers.own_app import OwnAppError
from servers.target import RunningServer, ServerSample

SATURATED = 0.9  # the server CPUs busy at least this share of the window: the servers, not the client, set the pace
BATCHES = 10  # a window's own interval: the mean log ratio of this many stretches of it (batch means)


def measure_pair(
    measure: Measure, a: RunningServer, b: RunningServer, visit: PairVisit, work: Work, earlier: list[str] | None = None
) -> PairWindow:
    """One paired window on two running servers, checked before and after like a repeat (lab/measure.py)."""
    record = {
        "schema_version": bundle.SCHEMA_VERSION, "kind": "pair", "run_id": measure.run_id, "key": visit.base.key,
        "cell": visit.base, "scenario": work.scenario, "round": work.number,
        "variants": (visit.a.variant, visit.b.variant), "first": visit.first,
        "attempt": 1 + len(earlier or []), "earlier": list(earlier or []),
    }  # fmt: skip
    before = [f"{side}: {problem}" for side, server in (("A", a), ("B", b)) if (problem := health(server))]
    if before:
        return failed(record, f"before the window: {'; '.join(before)}")
    try:
        spec = measure.config.paired(measure.load(a, work.scenario, 0.0, work.duration, work.warmup), b.url)
    except OwnAppError as exc:
        return failed(record, str(exc))
    speed_before = measure.probe()
    a.sample_open()
    b.sample_open()
    measure.speedometer.start()
    try:
        result = measure.loads.run(spec)
    except LoadError as exc:
        for server in (a, b):
            server.sample_close(0.0, 0.0)
        measure.speedometer.stop()
        return failed(record, f"load: {str(exc)[:300]}")
    except BaseException:
        for server in (a, b):
            server.sample_close(0.0, 0.0)
        measure.speedometer.stop()
        raise
    start, end = result.window.start, result.window.end
    samples = a.sample_close(start, end), b.sample_close(start, end)
    timed = measure.timed(start, end)
    speed = measure.shares(speed_before, measure.probe())
    problems = window_problems(result, spec, measure.loads.workers)
    pair = result.pair
    if pair is None:
        problems.append("the load generator gave no figures per server")
    else:
        for name, side in (("A", pair.a), ("B", pair.b)):
            if problem := side_problem(side, pair):
                problems.append(f"{name}: {problem}")
    after = [f"{side}: {problem}" for side, server in (("A", a), ("B", b)) if (problem := health(server))]
    if after:
        problems.append(f"after the window: {'; '.join(after)}")
    figures = [
        ServerFigures(cpus=list(measure.server_cpus), startup_seconds=s.report.startup_seconds, **x.model_dump())
        for s, x in zip((a, b), samples, strict=True)
    ]
    return PairWindow(
        **record,
        status="failed" if problems else "ok",
        failure="; ".join(problems) or None,
        load=result,
        server_a=figures[0],
        server_b=figures[1],
        conditions=conditions(result, together(*samples), measure.server_cpus, speed, timed),
    )


def failed(record: dict, why: str) -> PairWindow:
    return PairWindow(**record, status="failed", failure=why, load=None, server_a=None, server_b=None, conditions=None)


def side_problem(side: SideResult, pair: PairResult) -> str | None:
    """A server of the pair with no correct answer in a whole second of its turns, or none at all."""
    turns = [n for k, n in enumerate(side.buckets) if mine(pair, side, k)]
    per_second = max(round(1 / pair.bucket_seconds / (2 if pair.mode == "slices" else 1)), 1)
    empty = [i for i in range(0, len(turns) - per_second + 1, per_second) if not any(turns[i : i + per_second])]
    if not side.ok:
        return "no correct answer in the whole window"
    if empty:
        return f"no correct answer for a second ({len(empty)} such)"
    return None


def together(a: ServerSample, b: ServerSample) -> ServerSample:
    """Two servers on the same CPUs as one: their own CPU added, the CPUs' busy time as either saw it."""
    return a.model_copy(
        update={
            "cpu_seconds": round(a.cpu_seconds + b.cpu_seconds, 3), "cpu_cores": round(a.cpu_cores + b.cpu_cores, 4),
            "processes": a.processes + b.processes,
            "rss_peak_bytes": max(a.rss_peak_bytes or 0, b.rss_peak_bytes or 0) or None,
        }
    )  # fmt: skip


# --- one window's figures -------------------------------------------------------------------------------------------
def mine(pair: PairResult, side: SideResult, k: int) -> bool:
    """Whether bucket k of the window is one of this side's turns (every bucket, together)."""
    if pair.mode == "together":
        return True
    return (pair.first + k) % 2 == (0 if side is pair.a else 1)


def rates(pair: PairResult, buckets: range | None = None) -> tuple[float, float]:
    """Each side's correct answers per counted second, over these buckets of the window (default: all)."""
    span = buckets if buckets is not None else range(len(pair.a.buckets))
    found = []
    for side in (pair.a, pair.b):
        turns = [k for k in span if mine(pair, side, k)]
        seconds = len(turns) * pair.counted_seconds()
        found.append(sum(side.buckets[k] for k in turns) / seconds if seconds else 0.0)
    return found[0], found[1]


def log_ratio(window: PairWindow) -> float | None:
    """log(B ÷ A) of the window's correct answers per counted second: B's speed against A's."""
    pair = window.load.pair if window.load else None
    if pair is None:
        return None
    a, b = rates(pair)
    return math.log(b / a) if a > 0 < b else None


def cost_log_ratio(window: PairWindow) -> float | None:
    """log(B ÷ A) of each server's own CPU per correct answer over the window."""
    pair = window.load.pair if window.load else None
    if pair is None or window.server_a is None or window.server_b is None or not pair.a.ok or not pair.b.ok:
        return None
    a, b = window.server_a.cpu_seconds / pair.a.ok, window.server_b.cpu_seconds / pair.b.ok
    return math.log(b / a) if a > 0 < b else None


def within_sd(window: PairWindow) -> float | None:
    """The standard error of the window's own log ratio, from BATCHES stretches of it (batch means): how precise one
    start of each server was measured, which says nothing of how the next start would have run."""
    pair = window.load.pair if window.load else None
    if pair is None or len(pair.a.buckets) < 2 * BATCHES:
        return None
    size = len(pair.a.buckets) // BATCHES
    size += size % 2  # whole pairs of turns in slices
    logs = []
    for start in range(0, size * BATCHES, size):
        a, b = rates(pair, range(start, min(start + size, len(pair.a.buckets))))
        if a > 0 < b:
            logs.append(math.log(b / a))
    return statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) >= 3 else None


def again(window: PairWindow) -> str | None:
    """Why a window should be measured again, if it should: its server CPUs were idle for part of it (the client was
    short of CPU, say, because a neighbour took the load CPUs). Steal and other work on the server CPUs are not a
    reason: they fall on both servers alike, which is the point of measuring them side by side."""
    if not window.ok or saturated(window):
        return None
    busy = min(window.server_a.cpus_busy.values(), default=0.0) if window.server_a else 0.0
    return f"the server CPUs {busy:.0%} busy, not saturated"


def saturated(window: PairWindow) -> bool:
    """The server CPUs were busy for most of the window: the servers set the pace, not the client."""
    figures = window.server_a
    return figures is not None and min(figures.cpus_busy.values(), default=0.0) >= SATURATED
