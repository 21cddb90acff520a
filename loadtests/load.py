"""The load side's interface: one bounded load (`Load`), its typed result (`LoadResult`), and the backend that runs it.

Two backends sit side by side: loadtests/local.py runs Locust as a child process on this machine's load CPUs;
loadtests/remote.py drives the compose lab's long-lived Locust master and its workers. The runner and calibration
see only `LoadBackend`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from core.host import UsageError
from loadtests import scenarios

USER_CLASSES = {"lean": "LeanUser", "stock": "StockUser"}
STARTUP_ALLOWANCE = 60.0  # seconds for Locust to start, spawn and stop, on top of the measured duration
MAX_DURATION = 3600.0
MAX_USERS = 10_000
MAX_RATE = 1_000_000.0
SHORTFALL_AT = 0.95  # open model: answered fewer than this share of the window's slots = the offer was not served


class LoadError(RuntimeError):
    """Locust failed, hung, or gave no result; the text after the first line is its log's tail."""


class LoadSideLostError(LoadError):
    """The load side itself is gone (the Locust master does not answer, or workers are missing): no later load can
    run."""


@dataclass(frozen=True)
class Load:
    """One load run, validated on construction: nothing starts with bad input."""

    target: str
    scenario: str = "plaintext"
    params: dict[str, str] = field(default_factory=dict)
    users: int = 64
    duration: float = 10.0
    rate: float = 0.0  # open model when > 0: requests/s offered by all users together
    client: Literal["lean", "stock"] = "lean"
    warmup: float = 0.0  # unrecorded seconds after every user runs, before the window opens
    arrivals: Literal["poisson", "uniform"] = "poisson"  # the open model's schedule
    max_connections: int = 1024  # open model: connections at most, when every one is busy at a slot

    def __post_init__(self) -> None:
        target = scenarios.Target.parse(self.target)
        plan = scenarios.plan(self.scenario, target, self.params)
        if self.client not in USER_CLASSES:
            raise UsageError(f"unknown client {self.client!r}; valid: {', '.join(USER_CLASSES)}")
        if plan.websocket and self.client == "stock":
            raise UsageError("the stock client (FastHttpUser) has no websocket support; use --client lean")
        if not 1 <= self.users <= MAX_USERS:
            raise UsageError(f"users {self.users} must be in 1-{MAX_USERS}")
        if not (math.isfinite(self.duration) and 0 < self.duration <= MAX_DURATION):
            raise UsageError(f"duration {self.duration} must be in (0, {MAX_DURATION:g}] seconds")
        if not (math.isfinite(self.rate) and 0 <= self.rate <= MAX_RATE):
            raise UsageError(f"rate {self.rate} must be in 0-{MAX_RATE:g} requests/s (0 = closed model)")
        if self.rate and self.client == "stock":
            raise UsageError(
                "the stock client (FastHttpUser) runs the closed model only; use --client lean with --rate"
            )
        if not (math.isfinite(self.warmup) and 0 <= self.warmup <= MAX_DURATION):
            raise UsageError(f"warm-up {self.warmup} must be in [0, {MAX_DURATION:g}] seconds")
        if self.arrivals not in ("poisson", "uniform"):
            raise UsageError(f"arrivals {self.arrivals!r}: give poisson or uniform")
        if not self.users <= self.max_connections <= 65_000:
            raise UsageError(
                f"max_connections {self.max_connections} must be in {self.users}-65000 (at least the users)"
            )

    @property
    def timeout(self) -> float:
        return self.warmup + self.duration + STARTUP_ALLOWANCE


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Window(Record):
    start: float
    end: float
    seconds: float


class Latency(Record):
    count: int
    mean_us: float | None = None
    min_us: int | None = None
    max_us: int | None = None
    percentiles_us: dict[str, int]
    curve_us: list[tuple[float, int]]
    hdr: str


class LoadGenerator(Record):
    """The load side's own figures for the window: each worker's share of a core, each load CPU's busy share."""

    cpus: list[int]
    processes: int
    client: str
    cpu_seconds: float  # the worker processes' CPU, together
    worker_utilization: list[float]  # each worker's CPU seconds per second of the window (1.0 = a whole core)
    cpu_busy: dict[str, float]  # each load CPU: share of the window busy with anything (the master, neighbours too)
    cpu_steal: dict[str, float]  # each load CPU: share of the window the hypervisor gave to someone else
    cpu_irq: dict[str, float]  # each load CPU: share of the window in interrupts (the network stack)
    master_utilization: float | None  # the Locust master's own CPU, when a master ran beside the workers

    @property
    def busiest_cpu(self) -> float:
        return max(self.cpu_busy.values(), default=0.0)

    @property
    def busiest_worker(self) -> float:
        return max(self.worker_utilization, default=0.0)


class LoadResult(Record):
    """What one load run measured, merged over every worker process: made by the locustfile, read by the runner."""

    scenario: str
    params: dict[str, int]
    client: str
    model: Literal["open", "closed"]
    users: int
    offered_rps: float | None
    arrivals: Literal["poisson", "uniform"] | None  # the open model's schedule
    rate_shortfall: bool | None  # open model: fewer correct answers than SHORTFALL_AT of the slots due
    window: Window
    requests: int
    ok: int
    errors: dict[str, int]
    rps: float
    per_second: list[int]  # correct answers in each whole second of the window, all processes together
    per_quarter: list[int] = []  # the same per quarter-second (not in bundles of schema 2 before it was added)
    latency: Latency  # from the send (closed model) or from the request's slot (open model)
    send_lateness: Latency | None  # open model: how long after its slot each request went out
    scheduled: int  # open model: slots due inside the window
    owed: int  # open model: slots due in the window but not answered by its end (waiting or in flight)
    peak_connections: int  # the most connections open at once in the window (past the users' in the open model)
    processes: int
    per_process_ok: list[int]
    load_generator: LoadGenerator


class RefereeResult(Record):
    """wrk on the same target, connections and load CPUs: the server's capacity without Locust."""

    rps: float
    non_2xx: int
    socket_errors: int
    threads: int
    seconds: float
    cpu_utilization: float  # wrk's CPU seconds per second per thread (1.0 = its threads' cores all busy)
    cpu_busy: dict[str, float]  # each load CPU: share of wrk's run busy with anything
    argv: list[str]

    @property
    def saturated(self) -> bool:
        """wrk itself ran out of CPU: its figure is then its own ceiling, a floor for the server's."""
        return self.cpu_utilization >= 0.9 or max(self.cpu_busy.values(), default=0.0) >= 0.9


class LoadBackend(Protocol):
    """Runs loads from its load CPUs with `workers` Locust worker processes."""

    cpus: tuple[int, ...]
    workers: int

    def run(self, load: Load) -> LoadResult:
        """Run the load to its end (it stops by itself) and return the merged result; LoadError on failure."""
        ...

    def referee(self, load: Load) -> RefereeResult | None:
        """wrk on the same load CPUs, target and connections; None where wrk is not installed."""
        ...

    def check(self) -> None:
        """The load side is whole (its master answers, every worker is there); LoadSideLostError if not."""
        ...

    def close(self) -> None:
        """The run is over: end what this backend started (for the master: the master and its workers)."""
        ...
