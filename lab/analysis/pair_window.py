"""The figures of one pair window (lab/measure/pair.py measures it): each side's correct answers per counted second,
B ÷ A of answers and of CPU per answer, the window's own interval, and whether the server CPUs set its pace."""

from __future__ import annotations

import math
import statistics

from lab.bundle import PairWindow
from lab.measure.pair import mine
from loadtests.load import PairResult

SATURATED = 0.9  # the server CPUs busy at least this share of the window: the servers, not the client, set the pace
BATCHES = 10  # a window's own interval: the mean log ratio of this many stretches of it (batch means)


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
