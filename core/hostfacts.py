"""What one host is, as both sides of a run read it: the load host here, the target host under its agent
(servers/agent.py, GET /host). The manifest keeps both; lab/hosts.py names the differences that would bias a result.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import socket
from importlib.metadata import distributions
from pathlib import Path

import psutil

from core.model import Record
from core.settings import settings

SYSCTL = Path("/proc/sys")


class Nic(Record):
    name: str
    driver: str  # the kernel driver, "virtual" for veth, bridges and the like, "" when unknown
    mtu: int | None
    speed_mbps: int | None  # as the driver reports it (none for virtual links)


class NetworkSettings(Record):
    """The kernel's network settings that bound a load: each None where this host does not say."""

    somaxconn: int | None  # net.core.somaxconn: a listen backlog's ceiling
    tcp_max_syn_backlog: int | None
    ip_local_port_range: list[int] | None  # the client's ephemeral ports, low and high
    tcp_tw_reuse: int | None  # 0 off, 1 on, 2 loopback only
    nofile_soft: int | None  # this process's open-file limit (RLIMIT_NOFILE): every connection is a file
    nofile_hard: int | None
    nics: list[Nic]


class HostFacts(Record):
    machine_id: str  # a hash of host name, CPU model and memory (LAB_HOST_ID instead when set)
    cpu_model: str
    logical_cpus: int
    cpu_affinity: list[int]
    memory_bytes: int
    kernel: str
    os: str
    python: str
    versions: dict[str, str]  # every installed distribution of the interpreter that reads them
    network: NetworkSettings


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def machine_id() -> str:
    """A short id for this host that reveals nothing: a hash of its hostname, CPU model and memory size.

    The same on the host and in the lab's containers (they share the host's network, so its hostname), and
    LAB_HOST_ID overrides it.
    """
    source = settings().host_id or f"{socket.gethostname()}|{cpu_model()}|{psutil.virtual_memory().total}"
    return hashlib.sha256(source.encode()).hexdigest()[:8]


def versions() -> dict[str, str]:
    """Every installed distribution and its exact version."""
    found = {d.metadata["Name"].lower(): d.version for d in distributions() if d.metadata["Name"]}
    return dict(sorted(found.items()))


def sysctl(name: str) -> list[int] | None:
    try:
        return [int(x) for x in (SYSCTL / name.replace(".", "/")).read_text().split()]
    except (OSError, ValueError):
        return None


def nics() -> list[Nic]:
    found = []
    for path in sorted(Path("/sys/class/net").glob("*")):
        if path.name == "lo":
            continue
        driver = path / "device" / "driver"
        if driver.exists():
            kind = driver.resolve().name
        elif Path("/sys/devices/virtual/net", path.name).exists():
            kind = "virtual"
        else:
            kind = ""

        def number(name: str, at: Path = path) -> int | None:
            try:
                value = int((at / name).read_text())
            except (OSError, ValueError):
                return None
            return value if value >= 0 else None

        found.append(Nic(name=path.name, driver=kind, mtu=number("mtu"), speed_mbps=number("speed")))
    return found


def network() -> NetworkSettings:
    one = {name: (v[0] if (v := sysctl(name)) else None) for name in ("net.core.somaxconn",
           "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_tw_reuse")}  # fmt: skip
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def limit(value: int) -> int | None:
        return None if value == resource.RLIM_INFINITY else value

    return NetworkSettings(
        somaxconn=one["net.core.somaxconn"], tcp_max_syn_backlog=one["net.ipv4.tcp_max_syn_backlog"],
        ip_local_port_range=sysctl("net.ipv4.ip_local_port_range"), tcp_tw_reuse=one["net.ipv4.tcp_tw_reuse"],
        nofile_soft=limit(soft), nofile_hard=limit(hard), nics=nics(),
    )  # fmt: skip


def facts() -> HostFacts:
    """This host as this process sees it (its CPU affinity and open-file limit are the process's)."""
    return HostFacts(
        machine_id=machine_id(),
        cpu_model=cpu_model(),
        logical_cpus=psutil.cpu_count(logical=True) or 0,
        cpu_affinity=sorted(os.sched_getaffinity(0)),
        memory_bytes=psutil.virtual_memory().total,
        kernel=platform.release(),
        os=os_name(),
        python=platform.python_version(),
        versions=versions(),
        network=network(),
    )
