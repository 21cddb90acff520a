"""A server's resource figures during a load window: CPU seconds and peak RSS of its whole process tree, and how busy
its CPUs were with anything (softirq included: on loopback much of the network stack runs there, outside the
process tree's own accounting)."""

from __future__ import annotations

import bisect
import contextlib
import threading
import time

import psutil

from core.host import CpuTimes, cpu_times


class TreeSampler(threading.Thread):
    """Every `interval` seconds: CPU seconds and RSS of a process and all its descendants (workers included).

    Figures for a window are taken between the first and last samples inside it, stretched to the window's length.
    """

    def __init__(self, root_pid: int, cpus: tuple[int, ...] = (), interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.cpus = cpus
        self.interval = interval
        self.times: list[float] = []
        self.cpu: list[dict[int, float]] = []  # {pid: CPU seconds so far}
        self.rss: list[dict[int, int]] = []  # {pid: resident bytes}
        self.busy: list[dict[int, CpuTimes]] = []  # {cpu: its counters so far}
        self.done = threading.Event()

    def run(self) -> None:
        known: dict[int, psutil.Process] = {}
        while not self.done.is_set():
            now, cpu, rss = time.time(), {}, {}
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for proc in tree:
                proc = known.setdefault(proc.pid, proc)  # keep the object: psutil caches per-process state in it
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess), proc.oneshot():
                    times = proc.cpu_times()
                    cpu[proc.pid] = times.user + times.system
                    rss[proc.pid] = proc.memory_info().rss
            per_cpu = cpu_times()
            busy = {c: per_cpu[c] for c in self.cpus if c < len(per_cpu)}
            self.times.append(now)
            self.cpu.append(cpu)
            self.rss.append(rss)
            self.busy.append(busy)
            self.done.wait(self.interval)

    def stop(self) -> None:
        self.done.set()
        self.join()

    def _span(self, start: float, end: float) -> tuple[int, int, float] | None:
        i = bisect.bisect_left(self.times, start)
        j = bisect.bisect_right(self.times, end) - 1
        if i >= len(self.times) or j <= i:
            return None
        return i, j, (end - start) / (self.times[j] - self.times[i])

    def cpu_seconds(self, start: float, end: float) -> dict[int, float]:
        """CPU seconds each process used in the window."""
        span = self._span(start, end)
        if span is None:
            return {}
        i, j, scale = span
        first, last = self.cpu[i], self.cpu[j]
        return {pid: (last[pid] - first.get(pid, 0.0)) * scale for pid in last}

    def cpus_busy(self, start: float, end: float) -> dict[int, CpuTimes]:
        """Each server CPU's busy, stolen and interrupt seconds in the window."""
        span = self._span(start, end)
        if span is None:
            return {}
        i, j, scale = span
        first, last = self.busy[i], self.busy[j]
        return {
            c: CpuTimes(
                (last[c].busy - first[c].busy) * scale,
                (last[c].steal - first[c].steal) * scale,
                (last[c].irq - first[c].irq) * scale,
            )
            for c in last
            if c in first
        }

    def rss_peak(self, start: float, end: float) -> int | None:
        """Largest total resident memory of the tree seen in the window, in bytes."""
        i = bisect.bisect_left(self.times, start)
        j = bisect.bisect_right(self.times, end)
        totals = [sum(sample.values()) for sample in self.rss[i:j]]
        return max(totals) if totals else None
