"""The one place that chooses how a run reaches its servers and its Locust: on this machine, or through the
compose lab's services (the target agent and the Locust master). Runner and calibration see only the Protocols."""

from __future__ import annotations

from pathlib import Path

from core.errors import UsageError
from lab.config import RunConfig
from lab.run import hosts
from loadtests.load import LoadBackend
from loadtests.local import LocalLocust
from loadtests.remote import MasterLocust
from servers.local import LocalTargets
from servers.matrix import Matrix
from servers.remote import AgentTargets
from servers.target import TargetBackend


def open_backends(config: RunConfig, matrix: Matrix, logs: Path) -> tuple[TargetBackend, LoadBackend]:
    """The run's target and load backends; each must run on exactly the CPU sets the config names, and the target
    side on the run's matrix."""
    targets: TargetBackend = (
        AgentTargets(config.target_agent, matrix, host=config.target_host)
        if config.target_agent
        else LocalTargets(logs, tuple(config.server_cpus), matrix=matrix, host=config.target_host)
    )
    try:
        loads: LoadBackend = (
            MasterLocust(config.locust_master, config.load_workers)
            if config.locust_master
            else LocalLocust(tuple(config.load_cpus), config.load_workers, logs / "load")
        )
        for side, backend, wanted, setting in (
            ("server", targets, config.server_cpus, "SERVER_CPUS / --server-cpus"),
            ("load", loads, config.load_cpus, "LOAD_CPUS / --load-cpus"),
        ):
            if sorted(backend.cpus) != sorted(wanted):
                raise UsageError(
                    f"the {side} side runs on CPUs {list(backend.cpus)}, but this run is for CPUs {wanted}: "
                    f"set {setting} to the same CPU set for both"
                )
        hosts.both(config, targets)  # a limit on either host that would turn connections away refuses the run here
    except BaseException:
        targets.release()  # refused: the agent is free for the next run at once
        raise
    return targets, loads
