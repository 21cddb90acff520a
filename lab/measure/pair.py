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
The verdict's interval is therefore over the rounds (lab/analysis/stats.py: side_by_side), and a window's own, much
narrower, interval is kept only to show how much of the noise is the starts'.

A window compares costs only while the server CPUs are saturated: when something else (the client, short of CPU)
sets the pace, B ÷ A reads the client's order of service as much as the servers' costs (measured here: a window whose
load CPU a neighbour took half of gave 1.02 and 1.02 in an A/A, against 0.99 to 1.01 around it). Such a window is
measured again, up to twice; one that stays so is kept and flagged, and the verdict says how many there were.
"""

from __future__ import annotations

from typing import Any

from lab import bundle
from lab.bundle import PairWindow, ServerFigures
from lab.measure.conditions import conditions, window_problems
from lab.measure.instrument import Instrument
from lab.measure.repeat import span
from lab.measure.window import WindowFailedError, Work, measured, sides
from loadtests.load import PairResult, SideResult
from servers.matrix import Cell
from servers.own_app import OwnAppError
from servers.target import RunningServer, ServerSample


def measure_pair(
    instrument: Instrument,
    a: RunningServer,
    b: RunningServer,
    base: Cell,
    first: str,
    work: Work,
    earlier: list[str] | None = None,
) -> PairWindow:
    """One paired window on two running servers (`base`'s variants A and B; `first` started first), checked before
    and after like a repeat (lab/measure/repeat.py)."""
    head: dict[str, Any] = {
        "schema_version": bundle.SCHEMA_VERSION, "kind": "pair", "run_id": instrument.run_id, "key": base.key,
        "cell": base, "scenario": work.scenario, "round": work.number,
        "variants": (a.cell.variant, b.cell.variant), "first": first,
        "attempt": 1 + len(earlier or []), "earlier": list(earlier or []),
    }  # fmt: skip
    try:
        if before := sides([a, b], ("A", "B")):
            raise WindowFailedError(f"before the window: {'; '.join(before)}")
        try:
            load = instrument.load(a, work.scenario, 0.0, work.duration, work.warmup)
        except OwnAppError as exc:
            raise WindowFailedError(str(exc)) from None
        spec = instrument.config.paired(load, b.url)
        window = measured(instrument, [a, b], lambda: instrument.loads.run(spec), span)
    except WindowFailedError as exc:
        return PairWindow.failed(exc.reason, **head)
    result = window.result
    problems = window_problems(result, spec, instrument.loads.workers)
    pair = result.pair
    if pair is None:
        problems.append("the load generator gave no figures per server")
    else:
        for name, side in (("A", pair.a), ("B", pair.b)):
            if problem := side_problem(side, pair):
                problems.append(f"{name}: {problem}")
    if after := sides([a, b], ("A", "B")):
        problems.append(f"after the window: {'; '.join(after)}")
    figures = [
        ServerFigures(cpus=list(instrument.server_cpus), startup_seconds=s.report.startup_seconds, **x.model_dump())
        for s, x in zip((a, b), window.samples, strict=True)
    ]
    return PairWindow(
        **head,
        status="failed" if problems else "ok",
        failure="; ".join(problems) or None,
        load=result,
        server_a=figures[0],
        server_b=figures[1],
        conditions=conditions(result, together(*window.samples), instrument.server_cpus, window.speed, window.timed),
    )


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


def mine(pair: PairResult, side: SideResult, k: int) -> bool:
    """Whether bucket k of the window is one of this side's turns (every bucket, together)."""
    if pair.mode == "together":
        return True
    return (pair.first + k) % 2 == (0 if side is pair.a else 1)
