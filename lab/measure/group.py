"""One side-by-side window: every cell of a group running at once on the server CPUs, loaded together.

Why: this machine's CPU changes speed within a second (docs/method.md), so two windows measured one after the other
differ about as much as any two. Measured in the same seconds on the same CPUs, the cells see the same machine.
Together (the default), every server is loaded all the time and the kernel shares the server CPUs between them: each
server starts a session of its own, so it is an autogroup of its own and the scheduler shares the CPUs between the
servers, not between their threads. Each then answers in proportion to how little CPU an answer costs it, so b ÷ a of
the answers is a's CPU per answer over b's: throughput's ratio at saturation. In slices, the load goes to one server
at a time in turns of `slice_seconds`; the first part of each turn is not counted.

Each round starts every server afresh: one start of a server runs at a speed of its own (its memory layout, its hash
seed), so a single start of one against a single start of another would compare two starts as much as two cells.
A ratio's interval is therefore over the rounds (lab/analysis/side_by_side.py), and a window's own, much narrower,
interval is kept only to show how much of the noise is the starts'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lab import bundle
from lab.bundle import GroupWindow, ServerFigures
from lab.measure.conditions import conditions, window_problems
from lab.measure.instrument import Instrument
from lab.measure.repeat import span
from lab.measure.window import WindowFailedError, Work, measured, sides
from loadtests.load import GroupResult, PairResult, SideResult
from servers.own_app import OwnAppError
from servers.target import RunningServer, ServerSample

Shares = GroupResult | PairResult  # a group's sides as the load gives them (a pair's, in bundles before groups)


def measure_group(
    instrument: Instrument,
    key: str,
    servers: Sequence[RunningServer],
    started: Sequence[str],
    work: Work,
    earlier: list[str] | None = None,
) -> GroupWindow:
    """One window of load on every running server of group `key` together (`servers` in the load's order; `started`:
    their cells' keys in the order they started), checked before and after like a repeat (lab/measure/repeat.py)."""
    cells = [s.cell for s in servers]
    names = [c.key for c in cells]
    head: dict[str, Any] = {
        "schema_version": bundle.SCHEMA_VERSION, "kind": "group", "run_id": instrument.run_id, "key": key,
        "cells": cells, "scenario": work.scenario, "round": work.number, "started": list(started),
        "attempt": 1 + len(earlier or []), "earlier": list(earlier or []),
    }  # fmt: skip
    try:
        if before := sides(servers, names):
            raise WindowFailedError(f"before the window: {'; '.join(before)}")
        try:
            load = instrument.load(servers[0], work.scenario, 0.0, work.duration, work.warmup)
        except OwnAppError as exc:
            raise WindowFailedError(str(exc)) from None
        spec = instrument.config.grouped(load, [(s.url, s.report.protocol) for s in servers[1:]])
        window = measured(instrument, servers, lambda: instrument.loads.run(spec), span)
    except WindowFailedError as exc:
        return GroupWindow.failed(exc.reason, **head)
    result = window.result
    problems = window_problems(result, spec, instrument.loads.workers)
    if (group := result.group) is None or len(group.sides) != len(servers):
        problems.append("the load generator gave no figures per server")
    else:
        problems += [f"{name}: {problem}" for i, name in enumerate(names) if (problem := side_problem(group, i))]
    if after := sides(servers, names):
        problems.append(f"after the window: {'; '.join(after)}")
    figures = [
        ServerFigures(cpus=list(instrument.server_cpus), startup_seconds=s.report.startup_seconds, **x.model_dump())
        for s, x in zip(servers, window.samples, strict=True)
    ]
    return GroupWindow(
        **head,
        status="failed" if problems else "ok",
        failure="; ".join(problems) or None,
        load=result,
        servers=figures,
        conditions=conditions(result, together(window.samples), instrument.server_cpus, window.speed, window.timed),
    )


def side_problem(group: Shares, i: int) -> str | None:
    """A server of the group with no correct answer in a whole second of its turns, or none at all."""
    side: SideResult = group.sides[i]
    turns = [n for k, n in enumerate(side.buckets) if turn(group, i, k)]
    per_second = max(round(1 / group.bucket_seconds / (len(group.sides) if group.mode == "slices" else 1)), 1)
    empty = [j for j in range(0, len(turns) - per_second + 1, per_second) if not any(turns[j : j + per_second])]
    if not side.ok:
        return "no correct answer in the whole window"
    if empty:
        return f"no correct answer for a second ({len(empty)} such)"
    return None


def together(samples: Sequence[ServerSample]) -> ServerSample:
    """Servers on the same CPUs as one: their own CPU added, the CPUs' busy time as any of them saw it."""
    first = samples[0]
    return first.model_copy(
        update={
            "cpu_seconds": round(sum(s.cpu_seconds for s in samples), 3),
            "cpu_cores": round(sum(s.cpu_cores for s in samples), 4),
            "processes": sum(s.processes for s in samples),
            "rss_peak_bytes": max((s.rss_peak_bytes or 0 for s in samples), default=0) or None,
        }
    )


def turn(group: Shares, side: int, bucket: int) -> bool:
    """Whether bucket k of the window is this side's turn (every bucket, together; side i's in slices)."""
    if group.mode == "together":
        return True
    return (group.first + bucket) % len(group.sides) == side
