"""What every measurement of a run shares: its configuration and matrix, the load backend, the server CPUs' speed
gauge and speedometer, the probes that set the run's full speed, and your app's first correct answers."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from core import speed as core_speed
from lab.bundle import Speed
from lab.config import RunConfig
from lab.measure.speed import full_speed, in_window
from loadtests.load import Load, LoadBackend
from servers.matrix import Expected, Matrix
from servers.own_app import first_answer
from servers.target import CpuGauge, RunningServer, Speedometer

PROBE_BURST = 10  # probes of the server CPU with each speed-index sample, ~50 ms apart: the run's full speed
PROBE_SETTLE = 0.1  # seconds after a window before its probe: the server closing the window's connections is not it


@dataclass
class Instrument:
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
