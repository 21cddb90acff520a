"""One run's configuration: built once from the preset, the command line and the environment, checked before
anything starts, and stored as the manifest's `config` (a resumed run reads it back from there)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.host import UsageError, check_port
from loadtests.load import MAX_DURATION, MAX_USERS, Load
from servers.matrix import Cell, Matrix, load

MAX_REPEATS = 1000


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    preset: str | None
    cells: list[str]
    scenarios: list[str]
    repeats: int
    duration: float
    warmup: float
    users: int
    rates: list[float]  # 0 = closed model; each other value an offered requests/s (open model)
    client: Literal["lean", "stock"]
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
        if not (math.isfinite(self.duration) and 0 < self.duration <= MAX_DURATION):
            raise UsageError(f"--duration {self.duration} must be in (0, {MAX_DURATION:g}] seconds")
        if not (math.isfinite(self.warmup) and 0 <= self.warmup <= MAX_DURATION):
            raise UsageError(f"--warmup {self.warmup} must be in [0, {MAX_DURATION:g}] seconds")
        if not 1 <= self.users <= MAX_USERS:
            raise UsageError(f"--users {self.users} must be in 1-{MAX_USERS}")
        if not 1 <= self.load_workers <= max(1, 4 * len(self.load_cpus)):
            raise UsageError(
                f"{self.load_workers} Locust workers for load CPUs {self.load_cpus}: give 1-{4 * len(self.load_cpus)}"
                " (one per load CPU uses them all)"
            )
        if not self.rates or len(set(self.rates)) != len(self.rates):
            raise UsageError(f"rates {self.rates} must be distinct (0 = closed model)")
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
            for rate in self.rates:
                Load(target="http://127.0.0.1:1", scenario=name, users=self.users, client=self.client, rate=rate)
        return self

    @property
    def matrix(self) -> Matrix:
        return load()

    @property
    def cell_list(self) -> tuple[Cell, ...]:
        return tuple(self.matrix.cell_from_key(k) for k in self.cells)

    def units(self) -> list[tuple[Cell, str, float]]:
        """(cell, scenario, offered rate) in run order; a cell's units run on one server start."""
        matrix = self.matrix
        return [(c, s, r) for c in self.cell_list for s in self.scenarios if matrix.supports(c, s) for r in self.rates]

    def skipped(self) -> list[tuple[Cell, str, str]]:
        """(cell, scenario, reason) for each scenario a chosen cell cannot run."""
        matrix = self.matrix
        return [
            (c, s, reason)
            for c in self.cell_list
            for s in self.scenarios
            if (reason := matrix.invalid_reason(c, s)) is not None
        ]
