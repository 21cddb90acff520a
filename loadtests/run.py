"""Run one bounded Locust load against a target, sample the load generator's CPU, and say whether it was the limit.

Locust runs as a child process (one process, or a master with --processes workers), pinned to the load
generator's CPU set; this process samples every Locust process with psutil, and adds to Locust's result the CPU
figures and the `client_bound` verdict that decided it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from loadtests import scenarios
from servers.matrix import ROOT, MatrixError
from servers.process import free_port

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {"lean": "LeanUser", "stock": "StockUser"}
STARTUP_ALLOWANCE = 60.0  # seconds for Locust to start, spawn and stop, on top of the measured duration
MAX_DURATION = 3600.0


class LoadError(RuntimeError):
    """Locust failed, hung, or wrote no result."""


def machine_cpus() -> tuple[int, ...]:
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_cpus(text: str | None) -> tuple[int, ...] | None:
    """'1', '0,2' or '2-3' into CPU numbers, checked against the CPUs this process may use."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        if not low.strip().isdigit() or (high and not high.strip().isdigit()):
            raise MatrixError(f"CPU set {text!r} is not like 1 or 0,2 or 2-3")
        cpus.update(range(int(low), int(high or low) + 1))
    missing = cpus - set(machine_cpus())
    if missing:
        raise MatrixError(
            f"CPU set {text!r} names CPUs {sorted(missing)} this machine does not offer; it has {machine_cpus()}"
        )
    return tuple(sorted(cpus))


@dataclass(frozen=True)
class Load:
    """One load run, validated on construction: nothing starts with bad input."""

    target: str
    scenario: str = "plaintext"
    params: dict[str, str] = field(default_factory=dict)
    users: int = 64
    duration: float = 10.0
    rate: float = 0.0  # open model when > 0: requests/s offered by all users together
    processes: int = 1
    cpus: tuple[int, ...] | None = None
    client: Literal["lean", "stock"] = "lean"
    web_ui: bool = False  # Locust's UI on 127.0.0.1:8089 while the run lasts

    def __post_init__(self) -> None:
        target = scenarios.Target.parse(self.target)
        plan = scenarios.plan(self.scenario, target, self.params)
        if self.client not in USER_CLASSES:
            raise MatrixError(f"unknown client {self.client!r}; valid: {', '.join(USER_CLASSES)}")
        if plan.websocket and self.client == "stock":
            raise MatrixError("the stock client (FastHttpUser) has no websocket support; use --client lean")
        if self.users < 1 or self.processes < 1:
            raise MatrixError("users and processes must be at least 1")
        if not 0 < self.duration <= MAX_DURATION:
            raise MatrixError(f"duration must be in (0, {MAX_DURATION:g}] seconds")
        if self.rate < 0:
            raise MatrixError("rate must be >= 0 (0 = closed model)")

    @property
    def timeout(self) -> float:
        return self.duration + STARTUP_ALLOWANCE

    def command(self, out: Path) -> list[str]:
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", self.target]
        argv += ["-u", str(self.users), "-r", str(max(self.users * 10, 100)), "--loglevel", "WARNING"]
        argv += ["--lab-scenario", self.scenario, "--lab-duration", str(self.duration), "--lab-out", str(out)]
        argv += ["--lab-params", ",".join(f"{k}={v}" for k, v in self.params.items()), "--lab-rate", str(self.rate)]
        argv += ["--autostart", "--web-host", "127.0.0.1"] if self.web_ui else ["--headless", "--only-summary"]
        if self.processes > 1:
            # The forked workers reach their master on loopback, on a free port (not 5557: a lab may run there).
            port = str(free_port())
            argv += ["--processes", str(self.processes), "--master-bind-host", "127.0.0.1"]
            argv += ["--master-bind-port", port, "--master-port", port]
        return [*argv, USER_CLASSES[self.client]]


def run(load: Load, workdir: Path | None = None) -> dict[str, Any]:
    """Run the load to completion (it stops by itself; a hang is killed at load.timeout) and return the result."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="lab-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out, log = workdir / "locust.json", workdir / "locust.log"
    out.unlink(missing_ok=True)
    cpus = load.cpus
    with open(log, "wb") as logfile:
        proc = subprocess.Popen(
            load.command(out),
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
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
    result = json.loads(out.read_text())
    result["locust_exit_code"] = code
    result["load"] = {k: v for k, v in asdict(load).items() if k != "cpus"}
    return result


# --- wrk, when installed: the reference ceiling -------------------------------------------------------------------


def wrk(load: Load) -> dict[str, Any] | None:
    """wrk's requests/s for the same GET scenario, target, connections, duration and CPUs; None without wrk."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    plan = scenarios.plan(load.scenario, scenarios.Target.parse(load.target), load.params)
    if plan.method != "GET":
        raise MatrixError(f"wrk comparison runs GET scenarios only, not {load.scenario!r}")
    cpus = load.cpus
    argv = [exe, "-t1", f"-c{load.users}", f"-d{max(1, round(load.duration))}s", load.target + plan.path]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=load.duration + 30,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or not found:
        raise LoadError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    return {"rps": float(found.group(1)), "non_2xx": int(errors.group(1)) if errors else 0, "argv": argv}
