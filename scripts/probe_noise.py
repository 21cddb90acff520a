"""Benchmark: how this machine's own speed moves under a server-bound load, and how much of a window's RPS it explains.

One cell's server on the first CPU, wrk on the others, `--windows` closed-model windows of `--seconds` each. Right
before every window, and PROBE_SETTLE after it (as in a run), the lab's 10-ms probe (lab/fingerprint.py: probe)
times the server CPU. Printed: the probes as shares of the run's full speed (their 90th percentile, as
lab/measure.py judges them), each window's RPS, then how the probes spread (how many fell below lab/measure.py's
SLOW_BELOW) and how well they predict the windows: the correlation of RPS with the mean of the two probes, and the RPS
spread of all windows beside that of the windows with both probes at full speed (what re-measuring the slow ones
buys).

    python scripts/probe_noise.py [--cell KEY] [--scenario plaintext] [--windows 40] [--seconds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.host import free_port, machine_cpus
from lab.fingerprint import probe
from lab.measure import FULL_SPEED_QUANTILE, PROBE_SETTLE, SLOW_BELOW
from loadtests.load import Load
from loadtests.referee import wrk
from servers.local import LocalTargets
from servers.matrix import load


def spread(values: list[float]) -> str:
    return f"{statistics.stdev(values) / statistics.fmean(values):.1%}" if len(values) >= 2 else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="granian-uvloop-hyper-w1-raw")
    parser.add_argument("--scenario", default="plaintext")
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    cpus = machine_cpus()
    server_cpus, load_cpus = cpus[:1], cpus[1:] or cpus[:1]
    cell = load().cell_from_key(args.cell)
    rows: list[tuple[float, float, float]] = []
    print(f"{args.cell} {args.scenario}: server CPU {server_cpus[0]}, wrk on {list(load_cpus)}, {args.users} users")
    with LocalTargets(Path(tempfile.mkdtemp(prefix="lab-noise-")), server_cpus).serve(cell, free_port()) as server:
        spec = Load(target=server.url, scenario=args.scenario, users=args.users, duration=args.seconds)
        wrk(dataclasses.replace(spec, duration=1.0), tuple(load_cpus))  # warm-up
        for _ in range(args.windows):
            before = probe(server_cpus[0])
            found = wrk(spec, tuple(load_cpus))
            if found is None:
                raise SystemExit("probe_noise: needs wrk (apt-get install wrk)")
            time.sleep(PROBE_SETTLE)
            rows.append((before, found.rps, probe(server_cpus[0])))
    probes = sorted([r[0] for r in rows] + [r[2] for r in rows])
    full = probes[int(FULL_SPEED_QUANTILE * (len(probes) - 1))]
    for i, (before, rps, after) in enumerate(rows, 1):
        mark = " slow" if min(before, after) < SLOW_BELOW * full else ""
        print(f"{i:3d}  probe before {before / full:4.0%}  {rps:9,.0f} RPS  probe after {after / full:4.0%}{mark}")
    shares = [p / full for p in probes]
    rps = [r[1] for r in rows]
    fast = [r[1] for r in rows if min(r[0], r[2]) >= SLOW_BELOW * full]
    correlation = float(np.corrcoef(rps, [(r[0] + r[2]) / 2 for r in rows])[0, 1])
    slow = [s for s in shares if s < SLOW_BELOW]
    at = f", at a median {statistics.median(slow):.0%} of it" if slow else ""
    print(f"full speed {full:,.0f} inserts/s; probes below {SLOW_BELOW:.0%} of it: {len(slow)} of {len(shares)}{at}")
    print(f"RPS ~ mean of the two probes: correlation {correlation:.2f}")
    print(f"RPS spread (1 sd): all {len(rps)} windows {spread(rps)}; the {len(fast)} with both probes at full speed "
          f"{spread(fast)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
