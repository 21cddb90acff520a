"""The one place that chooses how a command reaches its servers and its Locust: on this machine, or through the
compose lab's services (the target agent and the Locust master). Runner, calibration and the lifecycle command see
only the Protocols."""

from __future__ import annotations

from pathlib import Path

from core.errors import LabError, ServiceLostError, UsageError
from lab.config import RunConfig
from lab.run import hosts
from loadtests.load import LoadBackend
from loadtests.local import LocalLocust
from loadtests.remote import MasterLocust
from servers.local import LocalTargets
from servers.matrix import Matrix
from servers.remote import AgentTargets
from servers.target import TargetBackend


def on_cpus(side: str, backend: TargetBackend | LoadBackend, wanted: list[int], setting: str) -> None:
    """A backend must run on exactly the CPU set the config names."""
    if sorted(backend.cpus) != sorted(wanted):
        raise UsageError(
            f"the {side} side runs on CPUs {list(backend.cpus)}, but this run is for CPUs {wanted}: "
            f"set {setting} to the same CPU set for both"
        )


def open_targets(config: RunConfig, matrix: Matrix, logs: Path) -> TargetBackend:
    """The target backend, on the config's server CPUs and target host, with both hosts checked (a limit on either
    that would turn connections away refuses the command here)."""
    targets: TargetBackend = (
        AgentTargets(config.target_agent, matrix, host=config.target_host)
        if config.target_agent
        else LocalTargets(logs, tuple(config.server_cpus), matrix=matrix, host=config.target_host)
    )
    try:
        on_cpus("server", targets, config.server_cpus, "SERVER_CPUS / --server-cpus")
        hosts.both(config, targets)
    except BaseException:
        targets.release()  # refused: the agent is free for the next run at once
        raise
    return targets


def open_loads(config: RunConfig, logs: Path) -> LoadBackend:
    """The load backend, on the config's load CPUs with its Locust workers."""
    loads: LoadBackend = (
        MasterLocust(config.locust_master, config.load_workers)
        if config.locust_master
        else LocalLocust(tuple(config.load_cpus), config.load_workers, logs / "load")
    )
    on_cpus("load", loads, config.load_cpus, "LOAD_CPUS / --load-cpus")
    return loads


def open_backends(config: RunConfig, matrix: Matrix, logs: Path) -> tuple[TargetBackend, LoadBackend]:
    """The run's target and load backends; each must run on exactly the CPU sets the config names, and the target
    side on the run's matrix."""
    targets = open_targets(config, matrix, logs)
    try:
        return targets, open_loads(config, logs)
    except BaseException:
        targets.release()
        raise


def services(master: str | None, agent: str | None) -> tuple[LoadBackend | None, TargetBackend | None]:
    """The compose services at these addresses, to be ended (each None when absent, gone, or not ours to end)."""
    loads: LoadBackend | None = None
    targets: TargetBackend | None = None
    if master:
        try:
            loads = MasterLocust(master)
        except ServiceLostError:
            loads = None
    if agent:
        try:
            targets = AgentTargets(agent)
        except LabError:  # gone, or it will not take this side's secret: nothing this run can end there
            targets = None
    return loads, targets
