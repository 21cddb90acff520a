"""How fast the server's CPU ran during a window: a sampler beside the server, on its CPU.

Shared VMs change their CPUs' speed within a second, with nothing in the guest to show it (no steal time), and a
window's RPS follows its CPU's mean speed; a probe before and after the window cannot tell what happened in between
(docs/method.md has the measurements and their commands). So during every throughput window (and wrk's),
one small process per server CPU times SAMPLE_INSERTS of the speed index's workload (lab/fingerprint.py:
inserts_per_second) every SAMPLE_EVERY seconds, on that CPU, in its own CPU time (time.thread_time: the server
preempting it does not count, a slow CPU does). The analysis relates each repeat's RPS to the mean of its samples
(lab/stats.py: the speed term). It is off in the open-model sweep, where its bursts would sit in the latency.

The sampler lives for the run (one Python start per CPU, not per window): `start` and `stop` are lines on its stdin;
at `stop` it writes the samples taken since `start` as one line of "time ops/s" pairs.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.speed import Samples

FULL_SPEED_QUANTILE = 0.9  # a CPU's full speed: this quantile of samples of it (its slow spells pull below it)
MIN_SPEED_SAMPLES = 10  # a window with fewer samples has no speed share


def full_speed(speeds: Iterable[float]) -> float | None:
    """A CPU's full speed from samples of its speed (the probes', the speedometer's): a high quantile of them."""
    ordered = sorted(speeds)
    return float(ordered[int(FULL_SPEED_QUANTILE * (len(ordered) - 1))]) if ordered else None


def in_window(samples: Samples, start: float, end: float) -> list[int]:
    """The speeds of the samples taken within [start, end], rounded to whole inserts per second."""
    return [round(speed) for when, speed in samples if start <= when <= end]
