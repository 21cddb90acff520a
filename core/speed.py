"""How fast a CPU runs: a fixed pure-Python workload, its one-off samples (`speed`, `probe`) and the speedometer's
sampler processes (`Speedometer`), wherever the CPUs to time are: beside the runner, or under the target agent on
another host (servers/agent.py). lab/fingerprint.py and lab/speedometer.py say how the lab uses them.

    python -m core.speed CPU      one speedometer sampler on CPU: `start` and `stop` lines on stdin
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable

from core.host import ROOT

SAMPLE_EVERY = 0.05  # seconds between samples
SAMPLE_INSERTS = 1_500  # one sample: ~0.3 ms of the workload here
STOP_TIMEOUT = 5.0  # seconds to wait for a sampler's answer to `stop`
Samples = list[tuple[float, float]]  # (time.time(), inserts per CPU-second)


# A fixed pure-Python workload (the servers under test are Python): dict, str and int work in a loop.
def inserts_per_second(inserts: int, passes: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """The workload: `inserts` dict inserts of str(i) -> i * 7 % 13, timed by `clock` (wall time; the speedometer
    passes its thread's CPU time); the best of `passes` passes."""
    best = 0.0
    for _ in range(passes):
        started = clock()
        d = {}
        for i in range(inserts):
            d[str(i)] = i * 7 % 13
        best = max(best, inserts / max(clock() - started, 1e-9))
    return best


# The speed index's sample: the workload in a fresh process (no heap or caches from the run).
SPEED_WORKLOAD = "from core.speed import inserts_per_second\nprint(inserts_per_second(200_000, 3))\n"


def speed(cpu: int) -> float:
    """Operations per second of SPEED_WORKLOAD pinned to one CPU: a short, fixed index of this machine's speed."""
    done = subprocess.run(
        [sys.executable, "-c", SPEED_WORKLOAD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    return round(float(done.stdout.strip()), 1)


PROBE_INSERTS = 40_000  # a fifth of one SPEED_WORKLOAD pass: 8-15 ms here


def probe(cpu: int) -> float:
    """How fast one CPU runs right now: the workload's inserts per second, the faster of two short passes (the first
    also warms the caches a window's server left cold), in this thread pinned to that CPU for the while — no process
    to start, so it can be taken before and after every window."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return round(inserts_per_second(PROBE_INSERTS, 2), 1)
    finally:
        os.sched_setaffinity(0, before)


class Speedometer:
    """One sampler process per CPU, started on first use; `start()` before a window, `stop()` after it."""

    def __init__(self, cpus: tuple[int, ...]) -> None:
        self.cpus = cpus
        self.children: dict[int, subprocess.Popen[str]] = {}

    def child(self, cpu: int) -> subprocess.Popen[str] | None:
        found = self.children.get(cpu)
        if found is not None and found.poll() is None:
            return found
        try:
            found = subprocess.Popen(
                [sys.executable, "-m", "core.speed", str(cpu)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        except OSError:
            return None
        self.children[cpu] = found
        return found

    def start(self) -> None:
        for cpu in self.cpus:
            child = self.child(cpu)
            if child is not None and child.stdin is not None:
                with contextlib.suppress(OSError):
                    child.stdin.write("start\n")

    def stop(self) -> dict[int, Samples]:
        """Every CPU's samples since `start` (an empty list for a CPU whose sampler failed)."""
        found: dict[int, Samples] = {}
        for cpu in self.cpus:
            child = self.children.get(cpu)
            found[cpu] = []
            if child is None or child.poll() is not None or child.stdin is None or child.stdout is None:
                continue
            try:
                child.stdin.write("stop\n")
                ready, _, _ = select.select([child.stdout], [], [], STOP_TIMEOUT)
                line = child.stdout.readline() if ready else ""
            except OSError:
                line = ""
            numbers = [float(x) for x in line.split()]
            found[cpu] = list(zip(numbers[::2], numbers[1::2], strict=False))
        return found

    def close(self) -> None:
        for child in self.children.values():
            with contextlib.suppress(OSError):
                if child.stdin is not None:
                    child.stdin.close()
            try:
                child.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()


def sample_loop(cpu: int) -> None:
    """The sampler: idle until `start`, then a sample every SAMPLE_EVERY seconds until `stop`; EOF ends it."""
    os.sched_setaffinity(0, {cpu})
    taken: Samples = []
    running = False
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], SAMPLE_EVERY if running else None)
        if ready:
            command = sys.stdin.readline()
            if not command:
                return
            if command.strip() == "start":
                running, taken = True, []
            elif command.strip() == "stop":
                running = False
                sys.stdout.write(" ".join(f"{when:.3f} {speed:.0f}" for when, speed in taken) + "\n")
                sys.stdout.flush()
            continue
        taken.append((time.time(), inserts_per_second(SAMPLE_INSERTS, 1, clock=time.thread_time)))


if __name__ == "__main__":
    sample_loop(int(sys.argv[1]))
