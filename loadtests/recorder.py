"""Per-request latency at microsecond resolution in an HDR histogram, and errors by reason.

One Recorder per load-generator process; its `Snapshot` (encoded histograms, counts, CPU) travels to the Locust
master as JSON and is merged there. Locust's own statistics are kept for its UI, but no reported latency comes from
them: they are whole milliseconds.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import psutil
from hdrh.histogram import HdrHistogram
from pydantic import Field

from core.host import cpu_times
from core.model import Record
from loadtests.load import Latency, LoadGenerator

LOWEST_US = 1
HIGHEST_US = 60_000_000  # a minute; anything slower is clamped and counted
SIGNIFICANT_DIGITS = 3
QUARTERS = 4  # buckets per second of the window's answer counts: fine enough to see a machine slow for a second
REPORTED = (50.0, 90.0, 99.0, 99.9, 99.99)
# The percentile curve: 0, 50, 75, 90, ... 99.999, evenly spaced in "nines" (log of 1/(1-p)), then the max.
CURVE = tuple(round(100 * (1 - 10 ** (-k / 4)), 6) for k in range(0, 21))


class CpuUse(Record):
    """One process's CPU over the window, and how busy each of its CPUs was (with anything, and stolen, and in
    interrupts): seconds per CPU, as (cpu, seconds) pairs."""

    pid: int
    cpus: list[int]
    seconds: float
    window: float
    busy: list[tuple[int, float]]
    steal: list[tuple[int, float]]
    irq: list[tuple[int, float]]


class Snapshot(Record):
    """What one load-generator process measured in the window: sent to the master, merged into a LoadResult."""

    hdr: str  # the latency histogram, encoded
    late_hdr: str | None  # the open model's send lateness, encoded
    errors: dict[str, int]
    started: float | None  # None: the window never opened (stopped during the warm-up)
    ended: float | None
    per_quarter: list[int]
    owed: int
    scheduled: int
    peak_connections: int
    cpu: CpuUse
    buckets: dict[int, int] = Field(default_factory=dict)  # a group load: correct answers per bucket of the epoch
    others: list[Snapshot] = Field(default_factory=list)  # a group load: its further servers', in the load's order

    @property
    def ok(self) -> int:
        """Successful requests."""
        return HdrHistogram.decode(self.hdr.encode()).get_total_count()


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def whole_seconds(quarters: list[int]) -> list[int]:
    """Answers per whole second from answers per quarter-second (a last, partial second left out)."""
    return [sum(quarters[i : i + QUARTERS]) for i in range(0, len(quarters) - QUARTERS + 1, QUARTERS)]


@dataclass
class Recorder:
    """Counts what happens between open() and close(); requests outside that window are not recorded (in the open
    model, a request counts when its slot is due inside the window: loadtests/flock.py: Flock.counts).

    The hot path only counts each whole-microsecond latency in a dict (one hash update, a small fraction of
    HdrHistogram.record_value's cost in pure Python); the counts go into the HDR histogram in bulk, losslessly.
    Beside the latency: errors by reason, correct answers per second of the window, and in the open model each
    request's send lateness (how long after its slot it went out), the slots still owed at the end and the
    connections opened beyond the users'.
    """

    histogram: HdrHistogram = field(default_factory=new_histogram)
    pending: Counter[int] = field(default_factory=Counter)
    late: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    per_quarter: Counter[int] = field(default_factory=Counter)  # correct answers per quarter-second of the window
    buckets: Counter[int] = field(default_factory=Counter)  # a group load: correct answers per bucket of the epoch
    peak_connections: int = 0
    scheduled: int = 0  # open model: slots due inside the window
    owed: int = 0
    started: float | None = None
    ended: float | None = None
    opened: float = 0.0  # perf_counter() at open(), for the quarter-second buckets
    recording: bool = False
    cpu: dict[str, Any] = field(default_factory=dict)

    def open(self) -> None:
        self.histogram.reset()
        for counter in (self.pending, self.late, self.errors, self.per_quarter, self.buckets):
            counter.clear()
        self.peak_connections = self.scheduled = self.owed = 0
        self.cpu = {"pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0)), "start": cpu_reading()}
        self.opened = time.perf_counter()
        self.started, self.ended, self.recording = time.time(), None, True

    def close(self, owed: int = 0) -> None:
        if self.recording:
            self.ended, self.recording = time.time(), False
            self.owed = owed
            self.cpu["end"] = cpu_reading()

    def success(self, seconds: float) -> None:
        if self.recording:
            self.pending[round(seconds * 1_000_000)] += 1
            self.per_quarter[int((time.perf_counter() - self.opened) * QUARTERS)] += 1

    def failure(self, reason: str) -> None:
        if self.recording:
            self.errors[reason] += 1

    def flush(self) -> HdrHistogram:
        for value, count in self.pending.items():
            self.histogram.record_value(min(HIGHEST_US, max(LOWEST_US, value)), count)
        self.pending.clear()
        return self.histogram

    def snapshot(self) -> Snapshot:
        late = new_histogram()
        for value, count in self.late.items():
            late.record_value(min(HIGHEST_US, max(LOWEST_US, value)), count)
        span = (self.ended or time.time()) - (self.started or time.time())
        quarters = [self.per_quarter.get(i, 0) for i in range(max(int(span * QUARTERS), 0))]  # whole ones only
        return Snapshot(
            hdr=self.flush().encode().decode(),
            late_hdr=late.encode().decode() if self.late else None,
            errors=dict(self.errors),
            started=self.started,
            ended=self.ended,
            per_quarter=quarters,
            owed=self.owed,
            scheduled=self.scheduled,
            peak_connections=self.peak_connections,
            cpu=self.cpu_used(),
            buckets=dict(self.buckets),
        )

    def cpu_used(self) -> CpuUse:
        """This process's CPU seconds in the window, and how busy each of its CPUs was (with anything), and how
        much of that was stolen by the hypervisor."""
        start, end = self.cpu.get("start"), self.cpu.get("end") or cpu_reading()
        if not start:
            return CpuUse(pid=os.getpid(), cpus=[], seconds=0.0, window=0.0, busy=[], steal=[], irq=[])
        cpus = self.cpu["cpus"]
        return CpuUse(
            pid=self.cpu["pid"],
            cpus=cpus,
            seconds=end["process"] - start["process"],
            window=end["time"] - start["time"],
            busy=[(c, end["busy"][c] - start["busy"][c]) for c in cpus],
            steal=[(c, end["steal"][c] - start["steal"][c]) for c in cpus],
            irq=[(c, end["irq"][c] - start["irq"][c]) for c in cpus],
        )


def cpu_reading() -> dict[str, Any]:
    times = psutil.Process().cpu_times()
    per_cpu = cpu_times()
    return {
        "time": time.time(),
        "process": times.user + times.system,
        "busy": [t.busy for t in per_cpu],
        "steal": [t.steal for t in per_cpu],
        "irq": [t.irq for t in per_cpu],
    }


def load_generator(workers: list[CpuUse], master: CpuUse | None, client: str) -> LoadGenerator:
    """The load side's own figures from each worker process's CPU reading (and the master's, when there is one):
    each worker's share of a core, each load CPU's busy share (with anything on it, the master included)."""
    cpus = sorted({c for w in workers for c in w.cpus})
    shares: dict[str, dict[int, float]] = {"busy": {}, "steal": {}, "irq": {}}
    for w in workers:
        if w.window > 0:
            for kind, per_cpu in shares.items():
                for cpu, seconds in getattr(w, kind):
                    per_cpu[cpu] = max(per_cpu.get(cpu, 0.0), seconds / w.window)
    return LoadGenerator(
        cpus=cpus,
        processes=len(workers),
        client=client,
        cpu_seconds=round(sum(w.seconds for w in workers), 3),
        worker_utilization=[round(w.seconds / w.window, 4) if w.window > 0 else 0.0 for w in workers],
        cpu_busy={str(c): round(b, 4) for c, b in sorted(shares["busy"].items())},
        cpu_steal={str(c): round(b, 4) for c, b in sorted(shares["steal"].items())},
        cpu_irq={str(c): round(b, 4) for c, b in sorted(shares["irq"].items())},
        master_utilization=round(master.seconds / master.window, 4) if master and master.window > 0 else None,
    )


def merge(snapshots: Iterable[Snapshot]) -> tuple[HdrHistogram, HdrHistogram, Counter[str]]:
    """The processes' latency and send-lateness histograms merged, and their errors added up."""
    histogram, late, errors = new_histogram(), new_histogram(), Counter()
    for snap in snapshots:
        histogram.add(HdrHistogram.decode(snap.hdr.encode()))
        if snap.late_hdr:
            late.add(HdrHistogram.decode(snap.late_hdr.encode()))
        errors.update(snap.errors)
    return histogram, late, errors


@cache
def _equivalents(lowest: int, highest: int, digits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per index of a histogram's counts: the lowest, highest and median value it stands for, by hdrh's own
    arithmetic, once per layout (every lab histogram shares one), so that a summary needs no per-bucket Python loop."""
    h = HdrHistogram(lowest, highest, digits)
    values = [h.get_value_from_index(i) for i in range(h.counts_len)]
    highs = [h.get_highest_equivalent_value(v) for v in values]
    lows = [h.get_lowest_equivalent_value(v) for v in values]
    medians = [h._hdr_median_equiv_value(v) for v in highs]  # what get_mean_value weighs each count by
    return np.array(lows, np.int64), np.array(highs, np.int64), np.array(medians, np.int64)


def values_at_ranks(histogram: HdrHistogram, ranks: Iterable[int], highest: bool = True) -> list[int]:
    """The recorded values at these ranks (1 = the smallest value), each as the highest (or lowest) value of its
    bucket: what get_value_at_percentile returns for the rank it targets, found by one cumulative sum."""
    lows, highs, _ = _equivalents(
        histogram.lowest_trackable_value, histogram.highest_trackable_value, histogram.significant_figures
    )
    cumulative = np.cumsum(np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len])
    found = np.searchsorted(cumulative, list(ranks), side="left")  # the first index whose cumulative count reaches it
    table = highs if highest else lows
    return [int(table[i]) if i < len(table) else 0 for i in found]


def latency_summary(histogram: HdrHistogram) -> Latency:
    """Percentiles in microseconds, the full curve, and the encoded histogram itself. The same numbers as hdrh's
    get_value_at_percentile and get_mean_value, from the counts array in numpy: those walk every bucket in Python,
    and took most of `python -m lab plot`'s time (tests/test_analysis.py checks they agree)."""
    hdr = histogram.encode().decode()
    total = histogram.get_total_count()
    if total == 0:
        return Latency(count=0, percentiles_us={}, curve_us=[], hdr=hdr)
    _, _, medians = _equivalents(
        histogram.lowest_trackable_value, histogram.highest_trackable_value, histogram.significant_figures
    )
    counts = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len].astype(np.int64)
    # int64 holds the sum: a minute's worth of microseconds (6e7) times 1e11 answers would be needed to overflow it
    mean = float(int(counts @ medians)) / total
    wanted = (*REPORTED, *CURVE)
    at = values_at_ranks(histogram, [histogram.get_target_count_at_percentile(p) for p in wanted if p])
    values = dict(zip([p for p in wanted if p], at, strict=True))
    if 0.0 in wanted:  # hdrh gives the lowest value of the first bucket for the 0th percentile
        values[0.0] = values_at_ranks(histogram, [histogram.get_target_count_at_percentile(0.0)], highest=False)[0]
    return Latency(
        count=total,
        mean_us=round(mean, 1),
        min_us=histogram.get_min_value(),
        max_us=histogram.get_max_value(),
        percentiles_us={f"p{p:g}": values[p] for p in REPORTED},
        curve_us=[(p, values[p]) for p in CURVE] + [(100.0, histogram.get_max_value())],
        hdr=hdr,
    )
