"""Cells on this machine: each server a child process started through the launcher, pinned, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from core import hostfacts, interrupts, speed
from core.host import LOOPBACK, ROOT, child_setup, machine_cpus
from core.loopback import to_itself
from servers.matrix import Cell, Matrix, load
from servers.own_app import NAME as OWN
from servers.own_app import OwnApp
from servers.sampler import TreeSampler
from servers.target import (
    LifespanNote,
    ProcessSeen,
    Restart,
    RunningServer,
    ServerError,
    ServerSample,
    StartupReport,
    Termination,
)
from servers.variants import Environment, Variant, prepare

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
POLL = 0.025  # seconds between looks at a restarting server's processes: little CPU taken from the load beside it


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


@dataclass
class LocalServer:
    """A running cell on this machine (a RunningServer)."""

    cell: Cell
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    report: StartupReport
    cpus: tuple[int, ...] = ()
    exit_code: int | None = None
    sampler: TreeSampler | None = field(default=None, repr=False)
    lifespan_report: Path | None = None  # where its app notes its lifespan (LAB_LIFESPAN_REPORT)
    graceful: tuple[str, float | None, list[str]] = ("lab", None, [])  # as started: mode, seconds, flag
    restart_signal: str = "SIGHUP"  # its server's (matrix.toml [servers.NAME.stop])

    @property
    def url(self) -> str:
        return f"http://{self.report.host}:{self.port}"

    def alive(self) -> bool:
        if self.process.poll() is None:
            return True
        self.exit_code = self.process.returncode
        return False

    def log_tail(self) -> str:
        return tail(self.log)

    def sample_open(self) -> None:
        self.sampler = TreeSampler(self.process.pid, self.cpus)
        self.sampler.start()

    def sample_close(self, start: float, end: float) -> ServerSample:
        assert self.sampler is not None, "sample_open() first"
        self.sampler.stop()
        cpu = self.sampler.cpu_seconds(start, end)
        per_cpu = self.sampler.cpus_busy(start, end)
        seconds = end - start

        def share(value: float) -> float:
            return round(value / seconds, 4) if seconds > 0 else 0.0

        return ServerSample(
            cpu_seconds=round(sum(cpu.values()), 3),
            cpu_cores=share(sum(cpu.values())),
            rss_peak_bytes=self.sampler.rss_peak(start, end),
            processes=len(cpu),
            cpus_busy_seconds=round(sum(t.busy for t in per_cpu.values()), 3),
            cpus_busy={str(c): share(t.busy) for c, t in sorted(per_cpu.items())},
            cpus_steal={str(c): share(t.steal) for c, t in sorted(per_cpu.items())},
            cpus_irq={str(c): share(t.irq) for c, t in sorted(per_cpu.items())},
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, and (only if it hangs) SIGKILL the whole process group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise ServerError(
                    f"{self.cell.key} did not stop within {timeout:g} s of SIGTERM", tail(self.log)
                ) from None
        self.exit_code = self.process.returncode
        return self.exit_code

    def terminate(self, at: float, kill_after: float) -> Termination:
        """SIGTERM at `at` (the epoch); its exit seen at once through a pidfd; SIGKILL to its process group after
        `kill_after` seconds; then whatever of its group still runs, and whether its port still listens."""
        pid = self.process.pid
        pidfd = os.pidfd_open(pid)
        try:
            time.sleep(max(0.0, at - time.time()))
            signal_at = time.time()
            self.process.send_signal(signal.SIGTERM)
            exited = bool(select.select([pidfd], [], [], kill_after)[0])
            exit_at = time.time() if exited else None
        finally:
            os.close(pidfd)
        if not exited:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.exit_code = self.process.wait()
        leftovers = group_members(pid)
        seen = [line for member in leftovers if (line := cmdline(member))]
        if leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        mode, seconds, flag = self.graceful
        return Termination(
            graceful=mode,
            graceful_seconds=seconds,
            graceful_flag=flag,
            signal_at=signal_at,
            exit_at=exit_at,
            exit_code=self.exit_code,
            killed=not exited,
            kill_after=kill_after,
            leftovers=len(leftovers),
            leftover_cmdlines=seen,
            still_listening=listening(self.port),
            lifespan=read_lifespan(self.lifespan_report),
        )

    def restart(self, at: float, timeout: float) -> Restart:
        """The restart signal to the main process at `at` (the epoch); then its processes (psutil) and its workers'
        lifespan report looked at every POLL seconds until the old workers are gone and the new ones are up."""
        signal_name, workers = self.restart_signal, self.cell.workers
        main = psutil.Process(self.process.pid)
        time.sleep(max(0.0, at - time.time()))
        before = descendants(main)
        alive = {p.pid for p in before}
        old = sorted({n.pid for n in read_lifespan(self.lifespan_report) if n.event == "startup-complete"} & alive)
        signal_at = time.time()
        self.process.send_signal(signal.Signals[signal_name])
        done_at, new = None, []
        while self.process.poll() is None and time.time() < signal_at + timeout:
            time.sleep(POLL)
            alive = {p.pid for p in descendants(main)}
            notes = read_lifespan(self.lifespan_report)
            new = sorted({n.pid for n in notes if n.event == "startup-complete" and n.pid not in old} & alive)
            if len(new) >= workers and not set(old) & alive:
                done_at = time.time()
                break
        return Restart(
            signal=signal_name, signal_at=signal_at, workers=workers, timeout=timeout, before=before,
            after=descendants(main), old_workers=old, new_workers=new, done_at=done_at,
            main_alive=self.process.poll() is None, lifespan=read_lifespan(self.lifespan_report),
        )  # fmt: skip


def descendants(main: psutil.Process) -> list[ProcessSeen]:
    """Every running process under `main`, with its command line shortened (zombies and the just-gone left out)."""
    try:
        children = main.children(recursive=True)
    except psutil.Error:
        return []
    seen = []
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                seen.append(ProcessSeen(pid=child.pid, cmdline=" ".join(child.cmdline())[:160]))
        except psutil.Error:
            continue
    return seen


def group_members(pgid: int) -> list[int]:
    """The processes of the process group `pgid` still running (zombies not counted)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> str:
    """A process's command line, shortened; empty once it is gone."""
    try:
        return " ".join(psutil.Process(pid).cmdline())[:160]
    except psutil.Error:
        return ""


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0 and not to_itself(probe)


def read_lifespan(path: Path | None) -> list[LifespanNote]:
    if path is None or not path.exists():
        return []
    return [LifespanNote.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class LocalTargets:
    """The TargetBackend for this machine: `python -m servers --cell KEY` pinned to `cpus`, logs in `workdir`."""

    workdir: Path
    cpus: tuple[int, ...] = field(default_factory=machine_cpus)
    ready_timeout: float = READY_TIMEOUT
    die_with_parent: bool = True  # the server gets SIGTERM when the process that started it dies
    matrix: Matrix | None = None  # the run's, whose file the launcher reads (None: the launcher's default)
    variants_dir: Path | None = None  # where variants' environments are kept (None: servers/variants.py's default)
    pythons: dict[str, str] = field(default_factory=dict)  # variant -> its interpreter, once prepared
    host: str = LOOPBACK  # the address the servers listen on (the agent's serve address on a target host)

    own: OwnApp | None = None  # your app, once prepared: the app `own` of the run's matrix

    def prepare(self, variants: list[Variant], own: OwnApp | None = None) -> list[Environment]:
        asked = [v.model_copy(update={"requirements": [*v.requirements, *own.requirements]}) for v in variants] \
            if own else list(variants)  # fmt: skip
        if own and own.requirements and not variants:  # your app's requirements, for every cell of the run
            asked = [Variant(name=OWN, requirements=own.requirements)]
        found = prepare(asked, self.variants_dir)
        self.pythons = {e.variant: e.python for e in found}
        if own and not variants:
            self.pythons[""] = self.pythons.pop(OWN, sys.executable)
        if own:
            for python in set(self.pythons.values()) or {sys.executable}:
                own.check_imports(python)
        self.own = own
        return found

    @contextlib.contextmanager
    def serve(self, cell: Cell, port: int, graceful: str = "lab") -> Iterator[RunningServer]:
        """Start the cell and yield it once it answers correctly; stop it (SIGTERM) when the block ends."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        report, log = self.workdir / f"{cell.key}.server.json", self.workdir / f"{cell.key}.server.log"
        lifespan = self.workdir / f"{cell.key}.{port}.lifespan.jsonl"
        report.unlink(missing_ok=True)
        lifespan.unlink(missing_ok=True)
        matrix = self.matrix or load()
        seconds = matrix.graceful_seconds(graceful)
        flag = matrix.servers[cell.server].stop.graceful_args(seconds)
        argv = [sys.executable, "-m", "servers", "--cell", cell.key, "--host", self.host, "--port", str(port)]
        argv += ["--report", str(report)]
        argv += ["--ready-timeout", str(self.ready_timeout), "--graceful", graceful]
        if self.matrix is not None and self.matrix.source:
            argv += ["--matrix", str(self.matrix.source)]
        if cell.variant and cell.variant not in self.pythons:
            raise ServerError(f"{cell.key}: the variant {cell.variant!r} was not prepared on the target side", "")
        if python := self.pythons.get(cell.variant):
            argv += ["--python", python]
        if cell.app == OWN:
            if self.own is None:
                raise ServerError(f"{cell.key}: your app was not prepared on the target side", "")
            argv += ["--own-app", self.own.target, "--own-code", self.own.code]
        cpus = self.cpus
        process: subprocess.Popen[bytes] | None = None
        server: LocalServer | None = None
        try:
            with interrupts.held(), open(log, "wb") as out:  # a Ctrl-C here is raised once `process` is known
                process = subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=dict(os.environ, LAB_LIFESPAN_REPORT=str(lifespan)),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=child_setup(cpus, self.die_with_parent),
                )
            deadline = time.monotonic() + self.ready_timeout + 5
            while not report.exists():
                if process.poll() is not None:
                    raise ServerError(f"{cell.key} exited {process.returncode} before it was ready", tail(log))
                if time.monotonic() > deadline:
                    raise ServerError(f"{cell.key} not ready within {self.ready_timeout:g} s", tail(log))
                time.sleep(0.05)
            started = StartupReport.model_validate_json(report.read_text())
            if not started.ready:
                raise ServerError(f"{cell.key} runs the event loop {started.loop_seen!r}, not {cell.loop}", tail(log))
            as_started = (graceful, seconds, flag)
            server = LocalServer(
                cell, port, log, process, started, self.cpus, lifespan_report=lifespan, graceful=as_started,
                restart_signal=matrix.servers[cell.server].stop.restart_signal,
            )  # fmt: skip
            yield server
        finally:
            if process is not None:
                with interrupts.held():  # stopped, and waited for, even when a Ctrl-C comes meanwhile
                    if process.poll() is None:
                        if server is None:
                            os.killpg(process.pid, signal.SIGKILL)
                            process.wait()
                        else:
                            with contextlib.suppress(ServerError):
                                server.stop()
                    with contextlib.suppress(ProcessLookupError):  # what a server killed outright may leave
                        os.killpg(process.pid, signal.SIGKILL)

    clock_offset: float = 0.0  # one clock: the servers run on this host

    def facts(self) -> hostfacts.HostFacts:
        return hostfacts.facts()

    def speed(self, cpu: int) -> float:
        return speed.speed(cpu)

    def probe(self, cpu: int) -> float:
        return speed.probe(cpu)

    def speedometer(self) -> speed.Speedometer:
        return speed.Speedometer(self.cpus)

    def release(self) -> None:
        """Nothing outlives a serve() block here."""

    def close(self) -> None:
        """Nothing outlives a serve() block here."""
