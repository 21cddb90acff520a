"""Loads from this machine, the way the compose lab makes them: a long-lived Locust master (web UI on a free
loopback port) and `workers` worker processes, all pinned to the load CPUs, driven run by run through the master
(loadtests/remote.py). Starting Locust once per run instead would cost a second of Python start-up every load.

`run_once` is the other way, for `python -m loadtests run`: one headless Locust process (or a master with forked
workers) that stops by itself; a hang is killed at the load's timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from core import interrupts
from core.host import LOOPBACK, ROOT, child_setup, free_port, machine_cpus
from loadtests.load import Load, LoadError, LoadResult, LoadSideLostError, RefereeResult
from loadtests.remote import MasterLocust

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
START_TIMEOUT = 60.0


def locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


class LocalLocust:
    """The LoadBackend for this machine: a Locust master and `workers` workers on `cpus`, logs in `workdir`."""

    def __init__(self, cpus: tuple[int, ...] | None = None, workers: int = 1, workdir: Path | None = None) -> None:
        self.cpus = tuple(cpus or machine_cpus())
        self.workers = workers
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="lab-load-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.master: MasterLocust | None = None

    def start(self) -> MasterLocust:
        """The master and its workers, started on first use."""
        if self.master is not None:
            return self.master
        self.workdir.mkdir(parents=True, exist_ok=True)
        web, bind = free_port(LOOPBACK), free_port(LOOPBACK)
        master = ["--master", "--master-bind-host", LOOPBACK, "--master-bind-port", str(bind), "--web-host", LOOPBACK]
        master += ["--web-port", str(web), "--class-picker", "--loglevel", "WARNING"]
        worker = ["--worker", "--master-host", LOOPBACK, "--master-port", str(bind), "--loglevel", "WARNING"]
        self.spawn(locust(*master), "master")
        for n in range(self.workers):
            self.spawn(locust(*worker), f"worker-{n + 1}")
        url = f"http://{LOOPBACK}:{web}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(f"{url}/lab/info", timeout=2).close()
                break
            except OSError:
                dead = [p for p in self.processes if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    self.close()
                    log = (self.workdir / "locust-master.log").read_text(errors="replace")[-2000:]
                    why = f"a Locust process exited {dead[0].returncode}" if dead else f"not within {START_TIMEOUT:g} s"
                    raise LoadError(f"the local Locust master and workers did not start ({why})", log) from None
                time.sleep(0.2)
        self.master = MasterLocust(url, self.workers)
        return self.master

    def spawn(self, argv: list[str], name: str) -> None:
        cpus = self.cpus
        with interrupts.held(), open(self.workdir / f"locust-{name}.log", "wb") as log:
            self.processes.append(
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=dict(os.environ, PYTHONPATH=str(ROOT)),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=child_setup(cpus),
                )
            )

    def check(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                role = "master" if "--master" in process.args else "worker"  # type: ignore[operator]
                raise LoadSideLostError(f"the local Locust {role} (pid {process.pid}) exited {process.returncode}")
        self.start().check()

    def run(self, load: Load) -> LoadResult:
        self.check()
        return self.master.run(load)  # type: ignore[union-attr]

    def referee(self, load: Load) -> RefereeResult | None:
        return self.start().referee(load)

    def close(self) -> None:
        """Stop the master and the workers (SIGTERM, then SIGKILL after 10 s)."""
        with interrupts.held():
            for process in self.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            for process in self.processes:
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            self.processes.clear()
            self.master = None

    def __enter__(self) -> LocalLocust:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def command(load: Load, out: Path, workers: int) -> list[str]:
    argv = locust("--loglevel", "WARNING", "--headless", "--only-summary", "--lab-out", str(out))
    if workers > 1:
        # The forked workers reach their master on loopback, on a free port (not 5557: a lab may run there).
        port = str(free_port())
        argv += ["--processes", str(workers), "--master-bind-host", LOOPBACK, "--master-bind-port", port]
        argv += ["--master-port", port]
    return [*argv, *load.command_line()]


def run_once(load: Load, cpus: tuple[int, ...], workers: int = 1, workdir: Path | None = None) -> LoadResult:
    """One headless Locust run that stops by itself after the window."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="lab-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out, log = workdir / "locust.json", workdir / "locust.log"
    out.unlink(missing_ok=True)
    with interrupts.held(), open(log, "wb") as logfile:
        proc = subprocess.Popen(
            command(load, out, workers),
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_setup(cpus),
        )
    try:
        code = proc.wait(timeout=load.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise LoadError(f"locust did not stop within {load.timeout:g} s; killed", log.read_text()[-3000:]) from None
    except BaseException:  # interrupted: leave no load running
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if not out.exists():
        raise LoadError(f"locust exited {code} without a result", log.read_text()[-3000:])
    return LoadResult.model_validate_json(out.read_text())
