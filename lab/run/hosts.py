"""The run's two hosts side by side (one host: the same facts twice): what would bias a result, named before the
first cell starts. Limits that would make the run fail or measure the kernel instead of the server refuse the run;
the rest are recorded in the manifest and said once.
"""

from __future__ import annotations

from core import hostfacts
from core.errors import UsageError
from core.hostfacts import HostFacts
from lab.config import RunConfig
from servers.target import TargetBackend

MAX_CLOCK_OFFSET = 0.05  # seconds: windows are timed on the load host and sampled on the target host
SPARE_FILES = 100  # files a process holds besides its connections


def check(config: RunConfig, load: HostFacts, target: HostFacts, offset: float, remote: bool) -> list[str]:
    """What differs between the hosts or falls short of the run, in words; a UsageError for a limit that would turn
    connections away."""
    notes: list[str] = []
    want = max(config.users, config.max_connections if config.sweep_seconds else 0)  # per server, at once
    servers = len(config.ports)  # a side-by-side round starts a whole group at once
    nofile = target.network.nofile_soft
    if nofile is not None and nofile < want * servers + SPARE_FILES:
        raise UsageError(
            f"the target host's open-file limit is {nofile} (ulimit -n of the agent), below the {want * servers} "
            "connections this run opens to its servers: raise it there (ulimit -n, or LimitNOFILE for a service), "
            f"or give --users {max((nofile - SPARE_FILES) // servers, 1)} or fewer"
        )
    backlog = target.network.somaxconn
    if backlog is not None and backlog < want:
        notes.append(
            f"net.core.somaxconn is {backlog} on the target host, below the {want} connections opened at once: "
            "connections may wait for the listen queue"
        )
    ports = load.network.ip_local_port_range
    if remote and ports is not None and ports[1] - ports[0] + 1 < want * servers:
        notes.append(f"the load host has {ports[1] - ports[0] + 1} ephemeral ports for {want * servers} connections")
    if abs(offset) > MAX_CLOCK_OFFSET:
        notes.append(
            f"the target host's clock is {offset * 1000:+.0f} ms off the load host's: each window's server CPU and "
            "speed are sampled over a shifted window (synchronise both with NTP)"
        )
    if remote:
        for what, a, b in (
            ("Python", load.python, target.python),
            ("kernel", load.kernel, target.kernel),
            ("CPU", load.cpu_model, target.cpu_model),
        ):
            if a != b:
                notes.append(f"the hosts run different {what}s: load {a}, target {b}")
        if load.network.tcp_tw_reuse != target.network.tcp_tw_reuse:
            notes.append(
                f"net.ipv4.tcp_tw_reuse is {load.network.tcp_tw_reuse} on the load host, "
                f"{target.network.tcp_tw_reuse} on the target host"
            )
        lab = ("locust", "pydantic", "psutil")
        differ = [n for n in lab if load.versions.get(n) != target.versions.get(n) and n in target.versions]
        if differ:
            notes.append("the hosts' lab packages differ: " + ", ".join(differ))
    return notes


def both(config: RunConfig, targets: TargetBackend) -> tuple[dict[str, HostFacts], list[str]]:
    """Both hosts' facts (load, target) and what would bias the run (a UsageError for what would break it)."""
    load, target = hostfacts.facts(), targets.facts()
    notes = check(config, load, target, targets.clock_offset, remote=config.target_agent is not None)
    return {"load": load, "target": target}, notes
