"""The target side's interface: a backend that runs one cell at a time, and the running server it hands out.

Two implementations sit side by side: servers/local.py starts cells on this machine; servers/remote.py asks the
agent (servers/agent.py, in the target container) to. The runner and calibration see only these Protocols.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from pydantic import Field

from core.errors import ProcessFailedError, ServiceLostError
from core.hostfacts import HostFacts
from core.model import Record
from servers.matrix import Cell, HttpVersion
from servers.own_app import OwnApp
from servers.variants import Environment, Variant


class ServerError(ProcessFailedError):
    """The server did not become ready, died, hung or did not stop cleanly (its log's tail in `log_tail`)."""


class TargetSideLostError(ServiceLostError):
    """The target side itself is gone (the agent does not answer): no later cell can run."""


class StartupReport(Record):
    """What the launcher saw while the cell started (servers/launcher.py writes it)."""

    key: str
    host: str
    port: int
    argv: list[str]
    versions: dict[str, str]
    startup_seconds: float
    loop_seen: str | None
    ready: bool
    ready_path: str = "/plaintext"  # what answers "Hello, World!" while the server is healthy (lab/measure.py)
    protocol: HttpVersion = "h1"  # what the server speaks to clients, probes included: h1, or h2 (h2c)


class ServerSample(Record):
    """The server during one load window: its process tree's CPU and memory, and its CPUs' busy time."""

    cpu_seconds: float  # the process tree's own CPU (user + system)
    cpu_cores: float  # CPU seconds per second of the window: how many cores the server kept busy
    rss_peak_bytes: int | None
    processes: int
    cpus_busy_seconds: float  # the server CPUs busy with anything, softirq included (/proc/stat)
    cpus_busy: dict[str, float]  # each server CPU: share of the window busy
    cpus_steal: dict[str, float]  # each server CPU: share of the window stolen by the hypervisor
    cpus_irq: dict[str, float]  # each server CPU: share of the window in interrupts (the network stack)


class LifespanNote(Record):
    """One line of an app's lifespan report (apps/common.py: note)."""

    event: str  # startup-complete, shutdown-begin, shutdown-complete
    app: str
    pid: int
    time: float  # the epoch


class Termination(Record):
    """One SIGTERM at a set time and what followed it, as the target side saw it (times: the epoch)."""

    graceful: str  # lab (the lab's timeout, the same for every server) or default (the server's own)
    graceful_seconds: float | None  # the timeout it ran with; None: its default
    graceful_flag: list[str]  # the flag that set it (empty: none given)
    signal_at: float  # when SIGTERM was sent
    exit_at: float | None  # when its main process exited by itself; None when it had to be killed
    exit_code: int | None  # its exit status (negative: the signal that ended it)
    killed: bool  # still running `kill_after` seconds after SIGTERM: its process group got SIGKILL
    kill_after: float
    leftovers: int  # processes of its group still running after its main process exited (then killed)
    still_listening: bool  # its port still accepted a connection after it exited
    lifespan: list[LifespanNote]  # its workers' lifespan report, startup to shutdown
    leftover_cmdlines: list[str] = Field(default_factory=list)  # what they were (command lines, shortened)

    def workers(self, event: str) -> int:
        return len({n.pid for n in self.lifespan if n.event == event})

    @property
    def shutdown_ran(self) -> bool:
        """Every worker that started began its lifespan shutdown."""
        return self.workers("shutdown-begin") >= self.workers("startup-complete") > 0

    @property
    def shutdown_completed(self) -> bool:
        return self.workers("shutdown-complete") >= self.workers("startup-complete") > 0


class ProcessSeen(Record):
    """One process under a server's main process, as /proc shows it."""

    pid: int
    cmdline: str  # shortened: enough to say what it is (a spawned worker, multiprocessing's resource tracker)


class Restart(Record):
    """One restart signal at a set time and what followed, as the target side saw it (times: the epoch). A worker is
    a process whose app completed its lifespan startup (the apps' report): the old ones served before the signal,
    the new ones started after it."""

    signal: str  # the server's restart_signal (matrix.toml [servers.NAME.stop])
    signal_at: float
    workers: int  # how many new workers make the restart done (the cell's)
    timeout: float  # the longest it was waited for
    before: list[ProcessSeen]  # every process under the main one just before the signal
    after: list[ProcessSeen]  # and when the restart was done (or the wait ended)
    old_workers: list[int]  # pids
    new_workers: list[int]  # pids, alive at the end
    done_at: float | None  # first seen (servers/local.py polls: POLL) with the old workers gone, `workers` new ones up
    main_alive: bool  # the main process still ran at the end: restarted, not stopped
    lifespan: list[LifespanNote]  # its workers' lifespan report, the old ones' and the new ones'

    @property
    def replaced(self) -> bool:
        """Every old worker gone, the new ones serving, the main process the same."""
        left = set(self.old_workers) & {p.pid for p in self.after}
        return self.done_at is not None and self.main_alive and bool(self.old_workers) and not left

    def ready_at(self) -> float | None:
        """When the last new worker's lifespan startup completed (the epoch)."""
        times = [n.time for n in self.lifespan if n.event == "startup-complete" and n.pid in self.new_workers]
        return max(times) if len(times) >= self.workers else None


class RunningServer(Protocol):
    """One cell's server, ready and answering on its host (report.host: loopback, or the target host's) and port."""

    cell: Cell
    port: int
    report: StartupReport
    exit_code: int | None

    @property
    def url(self) -> str: ...

    def alive(self) -> bool:
        """Its process is still running (exit_code is set once it is not)."""
        ...

    def sample_open(self) -> None:
        """Start sampling the server's resources for a load window."""
        ...

    def sample_close(self, start: float, end: float) -> ServerSample:
        """Stop sampling; the figures for the window [start, end] (wall-clock seconds)."""
        ...

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait up to `timeout` seconds (then SIGKILL), and return the exit code; ServerError when it did
        not stop by itself."""
        ...

    def terminate(self, at: float, kill_after: float) -> Termination:
        """Send SIGTERM at `at` (the epoch), wait up to `kill_after` seconds for the exit (then SIGKILL its process
        group), and say what happened; blocks until then. The server is stopped afterwards."""
        ...

    def restart(self, at: float, timeout: float) -> Restart:
        """Send its server's restart_signal (the matrix's) to its main process at `at` (the epoch) and wait, up to
        `timeout` seconds, until the cell's count of new workers serve and the old ones are gone; what happened. The
        server keeps running."""
        ...

    def log_tail(self) -> str: ...


class Speedometer(Protocol):
    """The server CPUs' speed sampled during a window, where they are (core/speed.py)."""

    def start(self) -> None: ...

    def stop(self) -> dict[int, list[tuple[float, float]]]:
        """Each server CPU's samples since start: (wall-clock time, inserts per CPU-second)."""
        ...

    def close(self) -> None: ...


class CpuGauge(Protocol):
    """How fast the server CPUs run, timed on the host they are on (core/speed.py)."""

    def speed(self, cpu: int) -> float:
        """The speed index's sample on one server CPU: the fixed workload in a fresh process."""
        ...

    def probe(self, cpu: int) -> float:
        """One server CPU's speed now: a short pass of the workload."""
        ...

    def speedometer(self) -> Speedometer: ...


class TargetBackend(CpuGauge, Protocol):
    """Starts cells on its server CPUs, one at a time, listening on `host` (loopback, or the target host's address)."""

    cpus: tuple[int, ...]
    host: str
    clock_offset: float  # seconds the target host's clock is ahead of this one's (0 on one host)

    def facts(self) -> HostFacts:
        """The target host: CPU, kernel, versions and network settings, read there."""
        ...

    def prepare(self, variants: list[Variant], own: OwnApp | None = None) -> list[Environment]:
        """Each of the run's variants installed (or found in the cache) on the target side, before any cell starts;
        a cell whose key names a variant then runs in its environment. With your app, its requirements go into
        each (or into an environment of their own) and it must import in each. A VariantError or UsageError (one
        line) when one cannot be."""
        ...

    def serve(self, cell: Cell, port: int, graceful: str = "lab") -> AbstractContextManager[RunningServer]:
        """Start the cell on host:port, with the lab's graceful timeout or (`default`) the server's own; the server
        is ready inside the block and stopped after it."""
        ...

    def release(self) -> None:
        """The run is over and the backend's service stays (the agent, for the next run): give it back."""
        ...

    def close(self) -> None:
        """The run is over: end what this backend started (for the agent: the agent itself)."""
        ...
