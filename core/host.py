"""The machine as both sides see it: the lab's root, CPU sets, loopback ports and atomic files."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from core.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
MAX_CPUS = 4096
ANY_CPUS = tuple(range(MAX_CPUS))  # another host's CPUs, which its agent checks
# The variables that place each side: every container pins itself from them (core/pin.py), and the runner's options
# --server-cpus, --load-cpus and --load-workers read them (lab/config.py).
CPU_VARIABLES = {"server": "SERVER_CPUS", "load": "LOAD_CPUS", "workers": "LOCUST_WORKERS"}


def machine_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity, which a container's cpuset narrows)."""
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_cpus(text: str, name: str = "CPU set", available: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """'1', '0,2' or '2-3' into CPU numbers, each one a CPU of `available` (default: this process's CPUs)."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, dash, high = (s.strip() for s in part.partition("-"))
        if not low.isdigit() or (dash and not high.isdigit()):
            raise UsageError(f"{name} {text!r} is not like 1 or 0,2 or 2-3")
        if dash and int(high) < int(low):
            raise UsageError(f"{name} {text!r} has a reversed range {low}-{high}; write {high}-{low}")
        cpus.update(range(int(low), int(high or low) + 1))
    available = machine_cpus() if available is None else available
    missing = cpus - set(available)
    if missing:
        raise UsageError(
            f"{name} {text!r} names CPUs {sorted(missing)} this machine does not offer; it has {list(available)}"
        )
    return tuple(sorted(cpus))


@dataclass(frozen=True)
class CpuPlan:
    """Where each side runs: the server's CPUs, the load generator's CPUs, and how many Locust workers."""

    server: tuple[int, ...]
    load: tuple[int, ...]
    workers: int


def server_default() -> tuple[int, ...]:
    """The server's CPUs when none are named: CPU 0, or on a machine of more than 2 CPUs the first half of them
    (multi-worker cells run on them: lab/scale.py)."""
    every = machine_cpus()
    return every[: max(len(every) // 2, 1)]


def load_default(server: tuple[int, ...] | list[int], remote: bool = False) -> tuple[int, ...]:
    """The load generator's CPUs when none are named: every CPU but the server's (all of them on a one-CPU machine,
    or when the servers run on another host, whose agent checks their CPUs there)."""
    every = machine_cpus()
    return every if remote else tuple(c for c in every if c not in server) or every


def plan_cpus(server: str | None, load: str | None, workers: str | int | None, remote: bool = False) -> CpuPlan:
    """The CPU sets and worker count from settings that may be empty, with the defaults above and one Locust worker
    per load CPU: the same for the runner (its options: lab/config.py) and every container (python -m core.pin).
    `remote`: the servers run on another host, and this one is the load host."""
    theirs = ANY_CPUS if remote else None  # the agent checks them, on its host (lab/backends.py)
    server_cpus = parse_cpus(server, "SERVER_CPUS / --server-cpus", theirs) if server else server_default()
    load_cpus = parse_cpus(load, "LOAD_CPUS / --load-cpus") if load else load_default(server_cpus, remote)
    if workers in (None, ""):
        count = len(load_cpus)
    else:
        text = str(workers).strip()
        if not text.isdigit() or int(text) < 1:
            raise UsageError(f"LOCUST_WORKERS / --load-workers {workers!r}: give a whole number of 1 or more, e.g. 1")
        count = int(text)
    return CpuPlan(server_cpus, load_cpus, count)


def format_cpus(cpus: tuple[int, ...] | list[int]) -> str:
    """The cpuset string for CPU numbers: (0, 1, 2, 5) -> '0-2,5'."""
    runs: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


@dataclass(frozen=True)
class CpuTimes:
    """One CPU's counters from /proc/stat, in seconds since boot."""

    busy: float  # busy with anything: all but idle and iowait (steal included: the CPU was not ours)
    steal: float  # the hypervisor gave the CPU to another machine
    irq: float  # hard and soft interrupts: on loopback, much of the network stack runs here


def cpu_times() -> list[CpuTimes]:
    """Every CPU's counters, in CPU order (the whole machine's, also inside a container)."""
    return [
        CpuTimes(t.user + t.nice + t.system + t.irq + t.softirq + t.steal, t.steal, t.irq + t.softirq)
        for t in psutil.cpu_times(percpu=True)
    ]


PR_SET_PDEATHSIG = 1


def child_setup(cpus: tuple[int, ...] | set[int], die_with_parent: bool = True) -> Callable[[], None]:
    """A preexec_fn for subprocess.Popen: pin the child to `cpus` and, unless told otherwise, have the kernel send it
    SIGTERM when the process that started it dies, even by kill -9: no server or Locust outlives its runner. (The
    kernel ties this to the starting thread, so a long-lived service that starts children from short-lived threads,
    as the agent does, passes die_with_parent=False.)"""
    import ctypes
    import signal

    def setup() -> None:
        os.sched_setaffinity(0, cpus)
        if die_with_parent:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return setup


MAX_GROUP = 16  # servers running at once on one host: the largest side-by-side group (loadtests/load.py loads them)

# Ports for servers and services the lab starts: below the kernel's ephemeral range (32768 up, by default), where no
# outgoing connection takes them as its own port and none can connect to itself (core/loopback.py).
PORT_RANGE = range(20000, 32000)


def free_port(host: str = LOOPBACK, count: int = 1) -> int:
    """The first of `count` consecutive ports that are free on `host` now, in PORT_RANGE (as the servers bind them:
    a listener holds a port, a connection waiting out TIME_WAIT does not)."""
    import random

    for _ in range(200):
        first = random.randrange(PORT_RANGE.start, PORT_RANGE.stop - count)
        if all(bindable(host, port) for port in range(first, first + count)):
            return first
    raise OSError(f"no {count} consecutive free ports in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} on {host}")


def bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def check_port(port: int, what: str = "port") -> None:
    if not 1 <= port <= 65535:
        raise UsageError(f"{what} {port} is not a TCP port; choose one in 1-65535")


def check_port_free(host: str, port: int, what: str = "port", fix: str = "choose another with --port") -> None:
    check_port(port, what)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers bind: connections of an earlier run waiting out TIME_WAIT do not hold the port; a listener does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UsageError(f"{what} {host}:{port} cannot be bound ({exc.strerror}): it is in use; {fix}") from None


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file so that a reader sees the old content or the new, never half of it (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the rest of the team
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
