"""wrk (HTTP/1.1) or h2load (h2c), the referee: the same target, connections and load CPUs as a Locust run, without
Locust.

What wrk gets from a server says what that server can do for a fast C client; the lab's Locust numbers are judged
against it (lab/verdict.py). wrk runs one thread per load CPU, pinned to them, and is itself measured: its own CPU
and the load CPUs' busy share, so a referee that was out of CPU is known to be one. It replays GET and POST
scenarios (POST through a Lua script with the same body); it speaks no websocket.

Over HTTP/2 the referee is nghttp2's h2load, run the same way: one thread per load CPU, the load's connections (-c)
and streams per connection (-m), the measured seconds (-D). Its limits are stated with its figure (LIMITS): it
checks status codes only, never a body or a header, and runs the closed model only (its -r is new connections per
second, not requests).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import psutil

from core.host import child_setup
from loadtests.load import Load, LoadError, RefereeResult
from loadtests.scenarios import Plan

Tool = Literal["wrk", "h2load"]


def can_referee(load: Load) -> bool:
    """Whether wrk (or h2load, over h2) can replay this load's scenario."""
    return load.plan().method in ("GET", "POST")


def referee(load: Load, cpus: tuple[int, ...]) -> RefereeResult | None:
    """The referee for the load's protocol: wrk over HTTP/1.1, h2load over h2c; None when it is not installed or
    cannot replay the scenario."""
    return h2load(load, cpus) if load.http == "h2" else wrk(load, cpus)


def h2load(load: Load, cpus: tuple[int, ...]) -> RefereeResult | None:
    """h2load's requests/s for the load's scenario on `cpus`, over h2c with the load's streams per connection."""

    def options(plan: Plan, threads: int, seconds: int, tmp: str) -> list[str]:
        argv = [f"-t{threads}", f"-c{load.users}", f"-m{load.streams}", f"-D{seconds}", "-T10"]
        if plan.method == "POST":
            data = os.path.join(tmp, "body")
            with open(data, "wb") as f:
                f.write(plan.request.partition(b"\r\n\r\n")[2])
            argv += ["-d", data, "-H", f"content-type: {plan.content_type or 'application/octet-stream'}"]
        return argv

    run = replay("h2load", load, cpus, options, r"finished in [\d.]+m?s, ([\d.]+) req/s")
    if run is None:
        return None
    out = run.done.stdout
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                       r"(\d+) timeout", out)  # fmt: skip
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not counts:
        raise run.failed()
    return run.result(
        non_2xx=sum(int(n) for n in statuses.groups()[1:]) if statuses else 0,
        socket_errors=int(counts.group(5)) + int(counts.group(6)),
        streams=load.streams,
    )


@dataclass(frozen=True)
class Replay:
    """One referee process's run: its output and what it cost."""

    tool: Tool
    done: subprocess.CompletedProcess[str]
    rps: float
    argv: list[str]
    threads: int
    elapsed: float
    cpu: float
    busy: dict[str, float]

    def failed(self) -> LoadError:
        done = self.done
        tail = f"{done.stdout[-500:]} {done.stderr[-500:]}"
        return LoadError(f"{self.tool} failed ({done.returncode})", log_tail=tail)

    def result(self, non_2xx: int, socket_errors: int, streams: int = 1) -> RefereeResult:
        return RefereeResult(
            rps=self.rps,
            non_2xx=non_2xx,
            socket_errors=socket_errors,
            threads=self.threads,
            seconds=round(self.elapsed, 3),
            cpu_utilization=round(self.cpu / self.elapsed / self.threads, 4) if self.elapsed > 0 else 0.0,
            cpu_busy=self.busy,
            argv=self.argv,
            tool=self.tool,
            streams=streams,
        )


def replay(
    tool: Tool, load: Load, cpus: tuple[int, ...], options: Callable[[Plan, int, int, str], list[str]], rps: str
) -> Replay | None:
    """Run `tool` on `cpus` against the load's target, one thread per load CPU for the load's seconds, with the
    options that `options(plan, threads, seconds, a temporary folder)` gives, and read its requests/s (the `rps`
    pattern's group); None when it is not installed or cannot replay the scenario. A run that failed or said no
    requests/s raises LoadError."""
    exe = shutil.which(tool)
    if exe is None or not can_referee(load):
        return None
    plan = load.plan()
    threads = max(1, min(len(cpus), load.users))
    seconds = max(1, round(load.duration))
    with tempfile.TemporaryDirectory(prefix=f"lab-{tool}-") as tmp:
        argv = [exe, *options(plan, threads, seconds, tmp), load.target + plan.path]
        done, elapsed, cpu, busy_share = measured(argv, cpus, seconds)
    found = re.search(rps, done.stdout)
    run = Replay(tool, done, float(found.group(1)) if found else 0.0, argv, threads, elapsed, cpu, busy_share)
    if done.returncode != 0 or not found:
        raise run.failed()
    return run


def measured(
    argv: list[str], cpus: tuple[int, ...], seconds: int
) -> tuple[subprocess.CompletedProcess[str], float, float, dict[str, float]]:
    """Run a referee on `cpus`: its output, wall seconds, CPU seconds, and each load CPU's busy share meanwhile."""
    before_cpus, before_children, started = busy(cpus), resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 40, preexec_fn=child_setup(cpus))
    elapsed = time.time() - started
    after_children, after_cpus = resource.getrusage(resource.RUSAGE_CHILDREN), busy(cpus)
    cpu = (after_children.ru_utime - before_children.ru_utime) + (after_children.ru_stime - before_children.ru_stime)
    shares = {str(c): round((after_cpus[c] - before_cpus[c]) / elapsed, 4) for c in sorted(after_cpus)}
    return done, elapsed, cpu, shares


def busy(cpus: tuple[int, ...]) -> dict[int, float]:
    times = psutil.cpu_times(percpu=True)
    return {c: t.user + t.nice + t.system + t.irq + t.softirq + t.steal for c, t in enumerate(times) if c in cpus}


def wrk(load: Load, cpus: tuple[int, ...]) -> RefereeResult | None:
    """wrk's requests/s for the load's scenario on `cpus`; None without wrk or for a scenario it cannot replay."""

    def options(plan: Plan, threads: int, seconds: int, tmp: str) -> list[str]:
        argv = [f"-t{threads}", f"-c{load.users}", f"-d{seconds}s", "--timeout", "10s"]
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
        return argv

    run = replay("wrk", load, cpus, options, r"Requests/sec:\s+([\d.]+)")
    if run is None:
        return None
    out = run.done.stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return run.result(
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )
