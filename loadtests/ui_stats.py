"""Locust's own statistics (its web UI, GET /stats/requests), updated in batches of answers, not per request.

No figure the lab reports comes from here (they are whole milliseconds); they let a person watch a run live.
`log_batch` is what Locust 2.47's StatsEntry.log does for one request, done for many at once: it keeps Locust's
per-second response-time cache as StatsEntry.log would.
"""

from __future__ import annotations

import time
from collections import Counter

from locust.stats import RequestStats, StatsEntry, bucket_response_time

from loadtests.scenarios import Plan


def log_batch(entry: StatsEntry, counts_ms: Counter[int], requests: int, length: int, now: float) -> None:
    if entry.use_response_times_cache and entry.last_request_timestamp and int(now) > int(entry.last_request_timestamp):
        entry._cache_response_times(int(now) - 1)
    entry.num_requests += requests
    entry.num_reqs_per_sec[int(now)] += requests
    entry.last_request_timestamp = now
    entry.total_content_length += length
    for ms, count in counts_ms.items():
        entry.total_response_time += ms * count
        entry.response_times[bucket_response_time(ms)] += count
    low, high = min(counts_ms), max(counts_ms)
    entry.min_response_time = low if entry.min_response_time is None else min(entry.min_response_time, low)
    entry.max_response_time = max(entry.max_response_time, high)


def report(
    stats: RequestStats, plan: Plan, counts_ms: Counter[int], requests: int, length: int, error: str | None
) -> None:
    if error is not None:
        stats.log_error(plan.method, plan.scenario, error)
    elif requests:
        now = time.time()
        log_batch(stats.total, counts_ms, requests, length, now)
        log_batch(stats.get(plan.scenario, plan.method), counts_ms, requests, length, now)
