"""One run's configuration: built once from the preset, the command line and the environment, checked before
anything starts, and stored as the manifest's `config` (a resumed run reads it back from there).

A run has up to four phases, all through the same backends:
  calibration  the load generator on the matrix's calibration cell, per scenario (lab/calibration.py);
  throughput   `repeats` rounds over every cell in a new random order each round: each cell's server starts,
               and each scenario gets a warm-up and one measured repeat (the first round adds the referee, wrk,
               and later rounds add it again where Locust ÷ wrk so far is off: lab/runner.py);
  extra        while `budget_seconds` allows, more rounds for the cells whose comparisons are still undecided,
               up to `max_repeats` (lab/stats.py);
  sweep        every cell at the same offered rates (open model) for `sweep_seconds` each: rates chosen from
               the throughput phase's own figures (lab/sweep.py), or the ones given with --rate.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.host import UsageError, check_port
from loadtests.load import MAX_DURATION, MAX_RATE, MAX_USERS, Load
from servers.matrix import Cell, Matrix, load

MAX_REPEATS = 100
MAX_BUDGET = 7 * 24 * 3600.0


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    preset: str | None
    cells: list[str]
    scenarios: list[str]
    repeats: int  # throughput rounds: measured repeats per cell x scenario
    duration: float  # measured seconds per repeat
    warmup: float  # unrecorded seconds before each repeat, on the same connections
    users: int  # connections
    client: Literal["lean", "stock"]
    referee_seconds: float  # wrk's run per cell x scenario; 0 = no referee
    rates: list[float]  # the sweep's offered rates when given by hand; [] = chosen from the run's own figures
    sweep_seconds: float  # measured seconds per swept rate; 0 = no sweep
    arrivals: Literal["poisson", "uniform"]
    max_connections: int  # open model: connections at most, when every one is busy at a slot
    budget_seconds: float  # the whole run's time budget for extra repeats; 0 = no extra repeats
    max_repeats: int  # extra repeats stop here
    server_cpus: list[int]
    load_cpus: list[int]
    load_workers: int  # Locust worker processes
    port: int
    calibrate: bool
    allow_shared_cpus: bool
    target_agent: str | None  # the compose lab's server agent, or None: servers start on this machine
    locust_master: str | None  # the compose lab's Locust master, or None: Locust starts on this machine

    def check(self) -> RunConfig:
        """Every bound and name, before anything starts (UsageError or MatrixError naming the input and a fix).

        Not a pydantic validator: those would turn these errors into ValidationErrors with a different text."""
        matrix = self.matrix
        if not self.cells:
            raise UsageError("no cells to run")
        for key in self.cells:
            matrix.cell_from_key(key)
        if not self.scenarios:
            raise UsageError("no scenarios to run")
        for name in self.scenarios:
            matrix.scenario(name)
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise UsageError(f"--repeats {self.repeats} must be in 1-{MAX_REPEATS}")
        if not self.repeats <= self.max_repeats <= MAX_REPEATS:
            raise UsageError(f"--max-repeats {self.max_repeats} must be in {self.repeats}-{MAX_REPEATS} (>= --repeats)")
        for name, value, low in (
            ("--duration", self.duration, 0.5),
            ("--warmup", self.warmup, 0.0),
            ("--referee-seconds", self.referee_seconds, 0.0),
            ("--sweep-seconds", self.sweep_seconds, 0.0),
        ):
            if not (math.isfinite(value) and low <= value <= MAX_DURATION):
                raise UsageError(f"{name} {value} must be in [{low:g}, {MAX_DURATION:g}] seconds")
        if self.referee_seconds and self.referee_seconds < 1:
            raise UsageError(f"--referee-seconds {self.referee_seconds} must be 0 (no referee) or at least 1")
        if not (math.isfinite(self.budget_seconds) and 0 <= self.budget_seconds <= MAX_BUDGET):
            raise UsageError(f"--budget-minutes {self.budget_seconds / 60:g} must be in 0-{MAX_BUDGET / 60:g}")
        if not 1 <= self.users <= MAX_USERS:
            raise UsageError(f"--users {self.users} must be in 1-{MAX_USERS}")
        if not 1 <= self.load_workers <= 4 * len(self.load_cpus or [0]):
            raise UsageError(
                f"--load-workers {self.load_workers} for load CPUs {self.load_cpus}: give 1-{4 * len(self.load_cpus)}"
                " (one per load CPU uses them all)"
            )
        if len(set(self.rates)) != len(self.rates) or any(not (0 < r <= MAX_RATE) for r in self.rates):
            raise UsageError(f"--rate {self.rates}: give distinct offered rates in (0, {MAX_RATE:g}] requests/s")
        if self.rates and not self.sweep_seconds:
            raise UsageError("--rate needs a sweep: give --sweep-seconds (e.g. 3)")
        check_port(self.port, "--port")
        if not self.server_cpus or not self.load_cpus:
            raise UsageError("the server and the load generator each need at least one CPU")
        if set(self.server_cpus) & set(self.load_cpus) and not self.allow_shared_cpus:
            raise UsageError(
                f"server CPUs {self.server_cpus} and load CPUs {self.load_cpus} overlap; give them disjoint sets so "
                "the client does not compete with the server (or --allow-shared-cpus, LAB_ALLOW_SHARED_CPUS=1)"
            )
        # Each load is validated on a stand-in target: scenario parameters, client, users, rates.
        for name in self.scenarios:
            for rate in [0.0, *self.rates]:
                Load(
                    target="http://127.0.0.1:1", scenario=name, users=self.users, client=self.client, rate=rate,
                    duration=self.duration, warmup=self.warmup, arrivals=self.arrivals,
                    max_connections=self.max_connections,
                )  # fmt: skip
        if self.sweep_seconds and self.client != "lean":
            raise UsageError("the sweep runs the open model, which only the lean client has: --sweep-seconds 0")
        return self

    @property
    def matrix(self) -> Matrix:
        return load()

    @property
    def cell_list(self) -> tuple[Cell, ...]:
        return tuple(self.matrix.cell_from_key(k) for k in self.cells)

    def scenarios_of(self, cell: Cell) -> list[str]:
        """The run's scenarios this cell can run, in the run's order."""
        return [s for s in self.scenarios if self.matrix.supports(cell, s)]

    def skipped(self) -> list[tuple[Cell, str, str]]:
        """(cell, scenario, reason) for each scenario a chosen cell cannot run."""
        matrix = self.matrix
        return [
            (c, s, reason)
            for c in self.cell_list
            for s in self.scenarios
            if (reason := matrix.invalid_reason(c, s)) is not None
        ]
