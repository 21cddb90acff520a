"""wrk, the referee: the same target, connections and load CPUs as a Locust run, without Locust.

What wrk gets from a server says what that server can do when the client is a fast C program; the lab's Locust
numbers are checked against it (the verdict in lab/verdict.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from core.host import UsageError
from loadtests import scenarios
from loadtests.load import Load, LoadError, RefereeResult


def installed() -> bool:
    return shutil.which("wrk") is not None


def wrk(load: Load, cpus: tuple[int, ...]) -> RefereeResult | None:
    """wrk's requests/s for the load's GET scenario; None without wrk."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    plan = scenarios.plan(load.scenario, scenarios.Target.parse(load.target), load.params)
    if plan.method != "GET":
        raise UsageError(f"wrk referees GET scenarios only, not {load.scenario!r}")
    argv = [exe, "-t1", f"-c{load.users}", f"-d{max(1, round(load.duration))}s", load.target + plan.path]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=load.duration + 30,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or not found:
        raise LoadError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    return RefereeResult(rps=float(found.group(1)), non_2xx=int(errors.group(1)) if errors else 0, argv=argv)
