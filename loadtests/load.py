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


class LoadError(RuntimeError):
    """Locust failed, hung, or gave no result; the text after the first line is its log's tail."""


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
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise UsageError(f"rate {self.rate} must be >= 0 requests/s (0 = closed model)")

    @property
    def timeout(self) -> float:
        return self.duration + STARTUP_ALLOWANCE


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
    cpus: list[int]
    processes: int
    client: str
    cpu_seconds: float
    capacity_utilization: float
    cpu_busy: float
    worker_utilization: list[float]


class LoadResult(Record):
    """What one load run measured, merged over every worker process: made by the locustfile, read by the runner."""

    scenario: str
    params: dict[str, int]
    client: str
    model: Literal["open", "closed"]
    users: int
    offered_rps: float | None
    rate_shortfall: bool | None
    window: Window
    requests: int
    ok: int
    errors: dict[str, int]
    rps: float
    latency: Latency
    processes: int
    per_process_ok: list[int]
    load_generator: LoadGenerator
    client_bound: bool
    client_bound_reason: str


class RefereeResult(Record):
    """wrk on the same target, connections and load CPUs: the server's capacity without Locust."""

    rps: float
    non_2xx: int
    argv: list[str]


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

    def close(self) -> None:
        """The run is over: end what this backend started (for the master: the master and its workers)."""
        ...
