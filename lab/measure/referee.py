"""wrk (or h2load over h2c), the referee, on a running server: the server's capacity without Locust, measured in a
window of its own with the server sampled meanwhile (lab/measure/window.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.bundle import Cost
from lab.measure.conditions import cost
from lab.measure.instrument import Instrument
from lab.measure.window import WindowFailedError, measured
from loadtests import referee as wrk
from loadtests.load import RefereeResult
from servers.target import RunningServer


@dataclass(frozen=True)
class Refereed:
    """The referee's outcome for a point: wrk's result (None, with why, when there is none) and both sides' CPU per
    answer under wrk (the server's, to compare with its cost under Locust)."""

    wrk: RefereeResult | None
    why: str = ""
    cost: Cost | None = None
    speed: list[int] = field(default_factory=list)  # the server CPUs' speed during wrk's run (lab/measure/speed.py)


def measure(instrument: Instrument, server: RunningServer, scenario: str) -> Refereed:
    """wrk on this server and scenario (closed model, the run's connections): its result and both sides' CPU per
    answer, or why there is none."""
    spec = instrument.load(server, scenario, 0.0, instrument.config.referee_seconds, 0.0)
    if not wrk.can_referee(spec):
        return Refereed(None, f"wrk cannot replay {scenario}")
    try:
        window = measured(instrument, [server], lambda: instrument.loads.referee(spec))
    except WindowFailedError as exc:
        error = exc.load_error
        tail = error.log_tail.strip() if error else ""
        return Refereed(None, f"{error}: {tail[:200]}" if error and tail else str(error or exc.reason))
    found = window.result
    if found is None:
        return Refereed(None, ("h2load" if spec.http == "h2" else "wrk") + " is not installed")
    wrk_cpu = found.cpu_utilization * found.threads * found.seconds
    return Refereed(found, "", cost(found.rps * found.seconds, window.samples[0], wrk_cpu), window.timed)
