"""Loads from this machine: Locust as a child process (one process, or a master with N forked workers), pinned to
the load CPUs, stopping by itself after the measured window; a hang is killed at the load's timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from core.host import LOOPBACK, ROOT, free_port, machine_cpus
from loadtests import referee
from loadtests.load import USER_CLASSES, Load, LoadError, LoadResult, RefereeResult

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def command(load: Load, out: Path, workers: int) -> list[str]:
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", load.target]
    argv += ["-u", str(load.users), "-r", str(max(load.users * 10, 100)), "--loglevel", "WARNING"]
    argv += ["--lab-scenario", load.scenario, "--lab-duration", str(load.duration), "--lab-out", str(out)]
    argv += ["--lab-params", ",".join(f"{k}={v}" for k, v in load.params.items()), "--lab-rate", str(load.rate)]
    argv += ["--headless", "--only-summary"]
    if workers > 1:
        # The forked workers reach their master on loopback, on a free port (not 5557: a lab may run there).
        port = str(free_port())
        argv += ["--processes", str(workers), "--master-bind-host", LOOPBACK]
        argv += ["--master-bind-port", port, "--master-port", port]
    return [*argv, USER_CLASSES[load.client]]


@dataclass
class LocalLocust:
    """The LoadBackend for this machine: Locust with `workers` processes on `cpus`, logs in `workdir`."""

    cpus: tuple[int, ...] = field(default_factory=machine_cpus)
    workers: int = 1
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lab-load-")))

    def run(self, load: Load) -> LoadResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        out, log = self.workdir / "locust.json", self.workdir / "locust.log"
        out.unlink(missing_ok=True)
        cpus = self.cpus
        with open(log, "wb") as logfile:
            proc = subprocess.Popen(
                command(load, out, self.workers),
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
        try:
            code = proc.wait(timeout=load.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise LoadError(
                f"locust did not stop within {load.timeout:g} s; killed. Log:\n{log.read_text()[-3000:]}"
            ) from None
        except BaseException:  # interrupted: leave no load running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        if not out.exists():
            raise LoadError(f"locust exited {code} without a result. Log:\n{log.read_text()[-3000:]}")
        return LoadResult.model_validate_json(out.read_text())

    def referee(self, load: Load) -> RefereeResult | None:
        return referee.wrk(load, self.cpus)

    def close(self) -> None:
        """Nothing outlives a run here."""
