"""How fast the server's CPU ran during a window: a sampler beside the server, on its CPU.

Shared VMs change their CPUs' speed within a second, with nothing in the guest to show it (no steal time), and a
window's RPS follows its CPU's mean speed; a probe before and after the window cannot tell what happened in between
(docs/method.md has the measurements and their commands). So during every throughput window (and wrk's),
one small process per server CPU times SAMPLE_INSERTS of the speed index's workload (lab/fingerprint.py:
inserts_per_second) every SAMPLE_EVERY seconds, on that CPU, in its own CPU time (time.thread_time: the server
preempting it does not count, a slow CPU does). The analysis relates each repeat's RPS to the mean of its samples
(lab/stats.py: the speed term). It is off in the open-model sweep, where its bursts would sit in the latency.

The sampler lives for the run (one Python start per CPU, not per window): `start` and `stop` are lines on its stdin;
at `stop` it writes the samples taken since `start` as one line of "time ops/s" pairs.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterable

from core.host import ROOT

SAMPLE_EVERY = 0.05  # seconds between samples
SAMPLE_INSERTS = 1_500  # one sample: ~0.3 ms of the workload here
STOP_TIMEOUT = 5.0  # seconds to wait for a sampler's answer to `stop`

FULL_SPEED_QUANTILE = 0.9  # a CPU's full speed: this quantile of samples of it (its slow spells pull below it)
MIN_SPEED_SAMPLES = 10  # a window with fewer samples has no speed share

Samples = list[tuple[float, float]]  # (time.time(), inserts per CPU-second)


def full_speed(speeds: Iterable[float]) -> float | None:
    """A CPU's full speed from samples of its speed (the probes', the speedometer's): a high quantile of them."""
    ordered = sorted(speeds)
    return float(ordered[int(FULL_SPEED_QUANTILE * (len(ordered) - 1))]) if ordered else None


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
                [sys.executable, "-m", "lab.speedometer", str(cpu)],
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


def in_window(samples: Samples, start: float, end: float) -> list[float]:
    """The speeds of the samples taken within [start, end], rounded to whole inserts per second."""
    return [round(speed) for when, speed in samples if start <= when <= end]


def sample_loop(cpu: int) -> None:
    """The sampler: idle until `start`, then a sample every SAMPLE_EVERY seconds until `stop`; EOF ends it."""
    from lab.fingerprint import inserts_per_second

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
