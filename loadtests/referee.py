"""wrk, the referee: the same target, connections and load CPUs as a Locust run, without Locust.

What wrk gets from a server says what that server can do for a fast C client; the lab's Locust numbers are judged
against it (lab/verdict.py). wrk runs one thread per load CPU, pinned to them, and is itself measured: its own CPU
and the load CPUs' busy share, so a referee that was out of CPU is known to be one. It replays GET and POST
scenarios (POST through a Lua script with the same body); it speaks no websocket.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time

import psutil

from core.host import child_setup
from loadtests.load import Load, LoadError, RefereeResult


def can_referee(load: Load) -> bool:
    """Whether wrk can replay this load's scenario."""
    return load.plan().method in ("GET", "POST")


def busy(cpus: tuple[int, ...]) -> dict[int, float]:
    times = psutil.cpu_times(percpu=True)
    return {c: t.user + t.nice + t.system + t.irq + t.softirq + t.steal for c, t in enumerate(times) if c in cpus}


def wrk(load: Load, cpus: tuple[int, ...]) -> RefereeResult | None:
    """wrk's requests/s for the load's scenario on `cpus`; None without wrk or for a scenario it cannot replay."""
    exe = shutil.which("wrk")
    if exe is None or not can_referee(load):
        return None
    plan = load.plan()
    threads = max(1, min(len(cpus), load.users))
    seconds = max(1, round(load.duration))
    argv = [exe, f"-t{threads}", f"-c{load.users}", f"-d{seconds}s", "--timeout", "10s"]
    with tempfile.TemporaryDirectory(prefix="lab-wrk-") as tmp:
        if plan.method == "POST":
            script = os.path.join(tmp, "post.lua")
            body = plan.request.partition(b"\r\n\r\n")[2]
            with open(script, "w") as f:
                f.write(
                    'wrk.method = "POST"\n'
                    f'wrk.headers["Content-Type"] = "{plan.content_type or "application/octet-stream"}"\n'
                    f'wrk.body = "{body.decode("latin-1")}"\n'
                )
            argv += ["-s", script]
        argv.append(load.target + plan.path)
        before_cpus, before_children, started = busy(cpus), resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + 40,
            preexec_fn=child_setup(cpus),
        )
        elapsed = time.time() - started
        after_children, after_cpus = resource.getrusage(resource.RUSAGE_CHILDREN), busy(cpus)
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or not found:
        raise LoadError(f"wrk failed ({done.returncode})", log_tail=f"{done.stdout[-500:]} {done.stderr[-500:]}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done.stdout)
    cpu = (after_children.ru_utime - before_children.ru_utime) + (after_children.ru_stime - before_children.ru_stime)
    return RefereeResult(
        rps=float(found.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        threads=threads,
        seconds=round(elapsed, 3),
        cpu_utilization=round(cpu / elapsed / threads, 4) if elapsed > 0 else 0.0,
        cpu_busy={str(c): round((after_cpus[c] - before_cpus[c]) / elapsed, 4) for c in sorted(after_cpus)},
        argv=argv,
    )
