"""One measured window, the routine every measurement shares (a repeat, a pair window, the referee): the servers
checked alive, the server CPU probed, the servers' sampling and the speedometer started, the load run, then the
samples closed on the window's own span and the CPU probed again. Whatever happens, the sampling and the speedometer
are stopped; a window that measured nothing raises WindowFailedError with why, the one failure path its callers turn
into a failed record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from lab.measure.conditions import health
from lab.measure.instrument import PROBE_SETTLE, Instrument
from loadtests.load import LoadError
from servers.target import RunningServer, ServerSample

R = TypeVar("R")


def point_label(scenario: str, rate: float) -> str:
    """A scenario, or a scenario at an offered rate: json, json@2000."""
    return f"{scenario}@{rate:g}" if rate else scenario


@dataclass(frozen=True)
class Work:
    """One measured repeat of a point: its scenario, offered rate (0: the closed model), number and timing."""

    scenario: str
    rate: float
    number: int  # the round (throughput and extra rounds); 1 in the sweep
    warmup: float
    duration: float

    @property
    def label(self) -> str:
        return point_label(self.scenario, self.rate)


class WindowFailedError(Exception):
    """A window that measured nothing, and why; `load_error` when the load itself failed."""

    def __init__(self, reason: str, load_error: LoadError | None = None) -> None:
        super().__init__(reason)
        self.reason, self.load_error = reason, load_error


@dataclass(frozen=True)
class Window(Generic[R]):
    """What one window measured: the load's result, each server's sample over the window's span, the speedometer's
    samples in it, and the server CPU's probes before and after as shares of the run's full speed."""

    result: R
    samples: tuple[ServerSample, ...]
    timed: list[int]
    speed: tuple[float, float]


def sides(servers: Sequence[RunningServer], names: Sequence[str] | None = None) -> list[str]:
    """What is wrong with each server that is not alive and answering, named by its side when there are several."""
    found = []
    for i, server in enumerate(servers):
        if problem := health(server):
            found.append(f"{names[i]}: {problem}" if names else problem)
    return found


def measured(
    instrument: Instrument,
    servers: Sequence[RunningServer],
    run: Callable[[], R],
    span: Callable[[R], tuple[float, float]] | None = None,
    speedometer: bool = True,
) -> Window[R]:
    """One window on running servers: `run` runs the load; `span` reads the window's start and end from its result
    (else the wall-clock time around `run`); no speedometer where its bursts would sit in the latency (the open
    model). WindowFailedError when the load fails; anything else is raised as it is, the sampling stopped first."""
    before = instrument.probe()
    for server in servers:
        server.sample_open()
    if speedometer:
        instrument.speedometer.start()
    started = time.time()
    try:
        result = run()
    except BaseException as exc:
        for server in servers:
            server.sample_close(0.0, 0.0)  # stops the sampling; no figures without a window
        if speedometer:
            instrument.speedometer.stop()
        if isinstance(exc, LoadError):
            raise WindowFailedError(f"load: {str(exc)[:300]}", exc) from None
        raise
    start, end = span(result) if span else (started, time.time())
    samples = tuple(server.sample_close(start, end) for server in servers)
    timed = instrument.timed(start, end) if speedometer else []
    after = instrument.probe(PROBE_SETTLE)
    return Window(result, samples, timed, instrument.shares(before, after))
