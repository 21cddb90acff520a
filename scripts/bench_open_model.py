"""Benchmark: does the open model send on time? Client send lateness and latency at offered rates on one cell.

The matrix's calibration cell on the first CPU, Locust (the lab's client) on the others; for each offered rate, one
run of --duration seconds with Poisson arrivals. Prints, per rate: achieved RPS, the client's send lateness
(p50/p99/p99.9: how long after its slot each request went out), latency from the slot (p50/p99), connections
opened beyond the users', and the client's CPU. The goal: lateness p99 under 1 ms up to half the client's ceiling
(given with --ceiling, or the closed-model RPS this script measures first); exits 1 when missed.

    python scripts/bench_open_model.py [--duration 5] [--rate 1000 --rate 5000 ...] [--cell KEY]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from core.host import free_port, plan_cpus
from loadtests.load import Load
from loadtests.local import LocalLocust
from servers.local import LocalTargets
from servers.matrix import load

GOAL_US = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--rate", type=float, action="append", default=[])
    parser.add_argument("--cell", help="default: the matrix's calibration cell")
    parser.add_argument("--scenario", default="plaintext")
    parser.add_argument("--ceiling", type=float, help="the client's ceiling (default: measured here, closed model)")
    args = parser.parse_args()
    matrix = load()
    cell = matrix.cell_from_key(args.cell) if args.cell else matrix.calibration[0]
    cpus = plan_cpus(None, None, None)  # the lab's own defaults: the server on the first CPU, the load on the rest
    server_cpus, load_cpus = cpus.server, cpus.load
    workdir = Path(tempfile.mkdtemp(prefix="lab-bench-open-"))
    targets = LocalTargets(workdir, server_cpus)
    with LocalLocust(load_cpus, len(load_cpus), workdir / "load") as loads, targets.serve(cell, free_port()) as server:
        spec = {"target": server.url, "scenario": args.scenario, "users": args.users, "warmup": 1.0}
        closed = loads.run(Load(**spec, duration=args.duration))
        ceiling = args.ceiling or closed.rps
        rates = args.rate or [round(ceiling * share, -2) for share in (0.05, 0.15, 0.3, 0.5, 0.7)]
        print(f"{cell.key} / {args.scenario}: server CPUs {list(server_cpus)}, load CPUs {list(load_cpus)}, "
              f"{args.users} users; closed model {closed.rps:,.0f} RPS; ceiling used {ceiling:,.0f}")  # fmt: skip
        print(f"{'offered':>8} {'achieved':>9} {'late p50':>9} {'p99':>7} {'p99.9':>7} {'lat p50':>8} {'p99':>8} "
              f"{'connections':>10} {'client CPU':>10}  shortfall")  # fmt: skip
        ok = True
        for rate in rates:
            r = loads.run(Load(**spec, duration=args.duration, rate=rate))
            late = r.send_lateness.percentiles_us if r.send_lateness else {}
            lat = r.latency.percentiles_us
            print(f"{rate:>8,.0f} {r.rps:>9,.0f} {late.get('p50', 0):>9} {late.get('p99', 0):>7} "
                  f"{late.get('p99.9', 0):>7} {lat.get('p50', 0):>8} {lat.get('p99', 0):>8} {r.peak_connections:>10} "
                  f"{r.load_generator.busiest_worker:>10.0%}  {r.rate_shortfall}")  # fmt: skip
            if rate <= ceiling / 2 and late.get("p99", 0) >= GOAL_US:
                ok = False
    print(
        f"goal: send lateness p99 < {GOAL_US} µs at offered rates up to half the ceiling: {'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
