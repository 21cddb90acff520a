"""Per-request latency at microsecond resolution in an HDR histogram, and errors by reason.

One Recorder per load-generator process; snapshots travel to the Locust master as encoded histograms and are
merged there. Locust's own statistics are kept for its UI, but no reported latency comes from them: they are whole
milliseconds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000  # a minute; anything slower is clamped and counted
SIGNIFICANT_DIGITS = 3
REPORTED = (50.0, 90.0, 99.0, 99.9, 99.99)
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

    def open(self) -> None:
        self.histogram.reset()
        self.pending.clear()
        self.errors.clear()
        self.started, self.ended, self.recording = time.time(), None, True

    def close(self) -> None:
        if self.recording:
            self.ended, self.recording = time.time(), False

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
        }


def merge(snapshots: Iterable[dict[str, Any]]) -> tuple[HdrHistogram, Counter[str]]:
    histogram, errors = new_histogram(), Counter()
    for snap in snapshots:
        histogram.add(HdrHistogram.decode(snap["hdr"]))
        errors.update(snap["errors"])
    return histogram, errors


def count(snapshot: dict[str, Any]) -> int:
    """Successful requests in one process's snapshot."""
    return HdrHistogram.decode(snapshot["hdr"]).get_total_count()


def latency_summary(histogram: HdrHistogram) -> dict[str, Any]:
    """Percentiles in microseconds, the full curve, and the encoded histogram itself."""
    if histogram.get_total_count() == 0:
        return {"count": 0, "percentiles_us": {}, "curve_us": [], "hdr": histogram.encode().decode()}
    return {
        "count": histogram.get_total_count(),
        "mean_us": round(histogram.get_mean_value(), 1),
        "min_us": histogram.get_min_value(),
        "max_us": histogram.get_max_value(),
        "percentiles_us": {f"p{p:g}": histogram.get_value_at_percentile(p) for p in REPORTED},
        "curve_us": [[p, histogram.get_value_at_percentile(p)] for p in CURVE] + [[100.0, histogram.get_max_value()]],
        "hdr": histogram.encode().decode(),
    }
