"""Per-request latency at microsecond resolution in an HDR histogram, and errors by reason.

One Recorder per load-generator process; snapshots travel to the Locust master as encoded histograms and are
merged there. Locust's own statistics are kept for its UI, but no reported latency comes from them: they are whole
milliseconds.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil
from hdrh.histogram import HdrHistogram

from loadtests.load import Latency, LoadGenerator

LOWEST_US = 1
HIGHEST_US = 60_000_000  # a minute; anything slower is clamped and counted
SIGNIFICANT_DIGITS = 3
REPORTED = (50.0, 90.0, 99.0, 99.9, 99.99)
CLIENT_BOUND_AT = 0.90  # share of the load generator's CPU capacity above which a result is the client's
# The percentile curve: 0, 50, 75, 90, ... 99.999, evenly spaced in "nines" (log of 1/(1-p)), then the max.
CURVE = tuple(round(100 * (1 - 10 ** (-k / 4)), 6) for k in range(0, 21))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass
class Recorder:
    """Counts what happens between open() and close(); requests outside that window are not recorded.

    The hot path only counts each whole-microsecond latency in a dict (one hash update, a small fraction of
    HdrHistogram.record_value's cost in pure Python); the counts go into the HDR histogram in bulk, losslessly.
    """

    histogram: HdrHistogram = field(default_factory=new_histogram)
    pending: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    started: float | None = None
    ended: float | None = None
    recording: bool = False
    cpu: dict[str, Any] = field(default_factory=dict)

    def open(self) -> None:
        self.histogram.reset()
        self.pending.clear()
        self.errors.clear()
        self.cpu = {"pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0)), "start": cpu_reading()}
        self.started, self.ended, self.recording = time.time(), None, True

    def close(self) -> None:
        if self.recording:
            self.ended, self.recording = time.time(), False
            self.cpu["end"] = cpu_reading()

    def success(self, seconds: float) -> None:
        if self.recording:
            self.pending[round(seconds * 1_000_000)] += 1

    def failure(self, reason: str) -> None:
        if self.recording:
            self.errors[reason] += 1

    def flush(self) -> HdrHistogram:
        for value, count in self.pending.items():
            self.histogram.record_value(min(HIGHEST_US, max(LOWEST_US, value)), count)
        self.pending.clear()
        return self.histogram

    def snapshot(self) -> dict[str, Any]:
        return {
            "hdr": self.flush().encode(),
            "errors": dict(self.errors),
            "started": self.started,
            "ended": self.ended,
            "cpu": self.cpu_used(),
        }

    def cpu_used(self) -> dict[str, Any]:
        """This process's CPU seconds in the window, and how busy each of its CPUs was (with anything)."""
        start, end = self.cpu.get("start"), self.cpu.get("end") or cpu_reading()
        if not start:
            return {"pid": os.getpid(), "cpus": [], "seconds": 0.0, "window": 0.0, "busy": []}
        cpus = self.cpu["cpus"]
        return {
            "pid": self.cpu["pid"],
            "cpus": cpus,
            "seconds": end["process"] - start["process"],
            "window": end["time"] - start["time"],
            "busy": [[c, end["busy"][c] - start["busy"][c]] for c in cpus],  # lists: msgpack wants str map keys
        }


def cpu_reading() -> dict[str, Any]:
    times = psutil.Process().cpu_times()
    per_cpu = psutil.cpu_times(percpu=True)
    return {
        "time": time.time(),
        "process": times.user + times.system,
        "busy": [t.user + t.nice + t.system + t.irq + t.softirq + t.steal for t in per_cpu],
    }


def client_verdict(workers: list[dict[str, Any]], client: str) -> tuple[LoadGenerator, bool, str]:
    """Whether the load generator, not the server, was the limit, from each worker process's own CPU figures.

    Two ways to be the limit: the worker processes use (nearly) all the cores they can use (a process uses one
    core at most, so the capacity is min(CPUs, processes)), or their CPUs were saturated by anything, including
    a neighbour starving the client. Returns the figures, the verdict and the sentence that explains it.
    """
    cpus = sorted({c for w in workers for c in w["cpus"]})
    utilization = [w["seconds"] / w["window"] if w["window"] > 0 else 0.0 for w in workers]
    busy: dict[int, float] = {}
    for w in workers:
        for cpu, seconds in w["busy"]:
            busy[cpu] = seconds / w["window"] if w["window"] > 0 else 0.0
    capacity = max(1, min(len(cpus), len(workers)))
    capacity_util = sum(utilization) / capacity
    cpu_busy = sum(busy.values()) / len(busy) if busy else 0.0
    figures = LoadGenerator(
        cpus=cpus,
        processes=len(workers),
        client=client,
        cpu_seconds=round(sum(w["seconds"] for w in workers), 3),
        capacity_utilization=round(capacity_util, 4),
        cpu_busy=round(cpu_busy, 4),
        worker_utilization=[round(u, 4) for u in utilization],
    )
    reason = (
        f"Locust workers used {capacity_util:.0%} of the {capacity} core(s) they can use; "
        f"load-generator CPUs {cpus} were {cpu_busy:.0%} busy; threshold {CLIENT_BOUND_AT:.0%}"
    )
    return figures, capacity_util >= CLIENT_BOUND_AT or cpu_busy >= CLIENT_BOUND_AT, reason


def merge(snapshots: Iterable[dict[str, Any]]) -> tuple[HdrHistogram, Counter[str]]:
    histogram, errors = new_histogram(), Counter()
    for snap in snapshots:
        histogram.add(HdrHistogram.decode(snap["hdr"]))
        errors.update(snap["errors"])
    return histogram, errors


def count(snapshot: dict[str, Any]) -> int:
    """Successful requests in one process's snapshot."""
    return HdrHistogram.decode(snapshot["hdr"]).get_total_count()


def latency_summary(histogram: HdrHistogram) -> Latency:
    """Percentiles in microseconds, the full curve, and the encoded histogram itself."""
    hdr = histogram.encode().decode()
    if histogram.get_total_count() == 0:
        return Latency(count=0, percentiles_us={}, curve_us=[], hdr=hdr)
    return Latency(
        count=histogram.get_total_count(),
        mean_us=round(histogram.get_mean_value(), 1),
        min_us=histogram.get_min_value(),
        max_us=histogram.get_max_value(),
        percentiles_us={f"p{p:g}": histogram.get_value_at_percentile(p) for p in REPORTED},
        curve_us=[(p, histogram.get_value_at_percentile(p)) for p in CURVE] + [(100.0, histogram.get_max_value())],
        hdr=hdr,
    )
