"""What a result needs to be reproduced elsewhere: the machine, the exact package versions, the lab's commit."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import psutil

from core.host import ROOT
from core.hostfacts import cpu_model as _cpu_model
from core.hostfacts import machine_id
from core.hostfacts import os_name as _os_name
from core.settings import settings
from lab.bundle import Machine


def in_container() -> bool:
    if Path("/.dockerenv").exists() or settings().in_container:
        return True
    try:
        return any(word in Path("/proc/1/cgroup").read_text() for word in ("docker", "containerd", "kubepods"))
    except OSError:
        return False


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
