"""Benchmark: is the lab's load generator measuring the server, or itself?

One run, on the matrix's calibration cell (server pinned to the first CPU, load generator to the rest): the lab's
lean Locust user, stock FastHttpUser and, when installed, wrk. All instrumentation stays on (HDR, response checks,
CPU sampling). Prints RPS, RPS per load-generator core, and the two ratios against their targets; exits 1 if a
target is missed.

    python scripts/bench_loadgen.py [--duration 10] [--users 64] [--out results/calibration.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loadtests.calibrate import TARGETS, calibrate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = calibrate(users=args.users, duration=args.duration)
    print(f"target: {result['cell']} / {result['scenario']}, server CPUs {result['server_cpus']}, "
          f"load CPUs {result['load_cpus']}, {args.users} connections, {args.duration:g} s each")  # fmt: skip
    print(f"{'client':<28}{'RPS':>10}{'RPS/core':>10}{'p50 µs':>9}{'p99 µs':>9}  client-bound")
    for name, label in (("lean", "lab LeanUser (Locust)"), ("stock", "stock FastHttpUser (Locust)")):
        r = result[name]
        figures = f"{r['rps']:>10.0f}{r['rps_per_core']:>10.0f}{r['p50_us']:>9}{r['p99_us']:>9}"
        print(f"{label:<28}{figures}  {r['client_bound']}")
    if result["wrk"]:
        print(f"{'wrk -t1':<28}{result['wrk']['rps']:>10.0f}")
    else:
        print("wrk: not installed (apt-get install wrk); the wrk ratio is not measured")
    ok = True
    for name, target in TARGETS.items():
        value = result["ratios"][name]
        verdict = "n/a" if value is None else ("ok" if value >= target else "MISSED")
        ok &= verdict != "MISSED"
        print(f"{name}: {value} (target >= {target}) {verdict}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
