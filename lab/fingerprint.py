"""What a result needs to be reproduced elsewhere: the machine, the exact package versions, the lab's commit."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from importlib.metadata import distributions
from pathlib import Path

import psutil

from core.host import ROOT
from core.settings import settings
from lab.bundle import Machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def in_container() -> bool:
    if Path("/.dockerenv").exists() or settings().in_container:
        return True
    try:
        return any(word in Path("/proc/1/cgroup").read_text() for word in ("docker", "containerd", "kubepods"))
    except OSError:
        return False


def machine_id() -> str:
    """A short id for this host that reveals nothing: a hash of its hostname, CPU model and memory size.

    The same on the host and in the lab's containers (they share the host's network, so its hostname), and
    LAB_HOST_ID overrides it.
    """
    source = settings().host_id or f"{socket.gethostname()}|{_cpu_model()}|{psutil.virtual_memory().total}"
    return hashlib.sha256(source.encode()).hexdigest()[:8]


def machine() -> Machine:
    freq = psutil.cpu_freq()
    env = settings()
    return Machine(
        machine_id=machine_id(),
        cpu_model=_cpu_model(),
        logical_cpus=psutil.cpu_count(logical=True) or 0,
        physical_cores=psutil.cpu_count(logical=False),
        cpu_affinity=sorted(os.sched_getaffinity(0)),
        cpu_max_mhz=round(freq.max, 1) if freq and freq.max else None,
        memory_bytes=psutil.virtual_memory().total,
        kernel=platform.release(),
        os=_os_name(),
        python=platform.python_version(),
        container=in_container(),
        # Docker does not tell a container about itself; compose passes these in (docker-compose.yml).
        docker_version=env.docker_version,
        image_id=env.image_id or _image_content(),
    )


def _image_content() -> str | None:
    """The lab image's content hash (its packages and code), written when the image was built (Dockerfile)."""
    path = ROOT / ".image-content"
    return f"content:{path.read_text().strip()}" if path.exists() else None


def versions() -> dict[str, str]:
    """Every installed distribution and its exact version."""
    found = {d.metadata["Name"].lower(): d.version for d in distributions() if d.metadata["Name"]}
    return dict(sorted(found.items()))


def _commit_from_files() -> str | None:
    """HEAD's commit read straight from .git, for containers that have the repository but no git."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


def lab_commit() -> str | None:
    """The lab's git commit (with -dirty when the work tree has changes, where git can tell)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return settings().git_commit or _commit_from_files()


# The speed workload and its probes live in core/speed.py, where the target agent runs them too.
from core.speed import PROBE_INSERTS, SPEED_WORKLOAD, inserts_per_second, probe, speed  # noqa: E402, F401
