"""A server's resource figures during a load window: CPU seconds and peak RSS of its whole process tree, and how busy
its CPUs were with anything (softirq included: on loopback much of the network stack runs there, outside the
process tree's own accounting)."""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from dataclasses import astuple

import psutil

from core.host import CpuTimes, cpu_times


class TreeSampler(threading.Thread):
    """Every `interval` seconds: CPU seconds and RSS of a process and all its descendants (workers included).

    A window's figures are the counters at its end less those at its start, each read between the two samples around
    it (a straight line between them): the sampler takes one as it starts and one as it stops, so every window it was
    running for has both.
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
        self.known: dict[int, psutil.Process] = {}

    def start(self) -> None:
        """The first sample before returning: a window that starts after this call lies after a sample."""
        self._sample()
        super().start()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            if not self._sample():
                return
        self._sample()  # one more at the stop: the window's end lies between two samples

    def _sample(self) -> bool:
        """One sample of the tree and the CPUs; False once the root process is gone."""
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return False
        now, cpu, rss = time.time(), {}, {}
        for proc in tree:
            proc = self.known.setdefault(proc.pid, proc)  # keep the object: psutil caches per-process state in it
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess), proc.oneshot():
                times = proc.cpu_times()
                cpu[proc.pid] = times.user + times.system
                rss[proc.pid] = proc.memory_info().rss
        per_cpu = cpu_times()
        self.times.append(now)
        self.cpu.append(cpu)
        self.rss.append(rss)
        self.busy.append({c: per_cpu[c] for c in self.cpus if c < len(per_cpu)})
        return True

    def stop(self) -> None:
        self.done.set()
        self.join()

    def _at(self, t: float) -> tuple[int, float] | None:
        """Where time t falls between two samples: the later one's index and its weight (0 at the earlier sample,
        1 at the later). None outside the samples. A busy machine can delay the sampler thread, so a short window may
        hold one sample or none: the counters are read between the samples around each end, not from samples inside."""
        k = bisect.bisect_left(self.times, t)
        if k == 0:
            return (0, 1.0) if self.times and self.times[0] == t else None
        if k >= len(self.times):
            return None
        t0, t1 = self.times[k - 1], self.times[k]
        return k, (t - t0) / (t1 - t0) if t1 > t0 else 1.0

    def cpu_seconds(self, start: float, end: float) -> dict[int, float]:
        """CPU seconds each process used in the window (a process's counter counts as 0 before it is first seen)."""
        a, b = self._at(start), self._at(end)
        if a is None or b is None:
            return {}

        def at(k: int, w: float, pid: int) -> float:
            before = self.cpu[k - 1].get(pid, 0.0) if k else 0.0
            after = self.cpu[k].get(pid, before)  # a process gone by the later sample stopped counting
            return before + (after - before) * w if k else after

        pids = {pid for sample in self.cpu[a[0] - 1 if a[0] else 0 : b[0] + 1] for pid in sample}
        return {pid: max(0.0, at(*b, pid) - at(*a, pid)) for pid in pids}

    def cpus_busy(self, start: float, end: float) -> dict[int, CpuTimes]:
        """Each server CPU's busy, stolen and interrupt seconds in the window."""
        a, b = self._at(start), self._at(end)
        if a is None or b is None:
            return {}

        def at(k: int, w: float, c: int) -> CpuTimes | None:
            after = self.busy[k].get(c)
            before = self.busy[k - 1].get(c) if k else after
            if after is None or before is None:
                return None
            return CpuTimes(*(x + (y - x) * w for x, y in zip(astuple(before), astuple(after), strict=True)))

        out = {}
        for c in self.cpus:
            first, last = at(*a, c), at(*b, c)
            if first is not None and last is not None:
                out[c] = CpuTimes(last.busy - first.busy, last.steal - first.steal, last.irq - first.irq)
        return out

    def rss_peak(self, start: float, end: float) -> int | None:
        """Largest total resident memory of the tree seen in the window, in bytes."""
        i = bisect.bisect_left(self.times, start)
        j = bisect.bisect_right(self.times, end)
        totals = [sum(sample.values()) for sample in self.rss[i:j]]
        return max(totals) if totals else None
