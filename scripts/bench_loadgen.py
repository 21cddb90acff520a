"""Benchmark: is the lab's load generator measuring the server, or itself?

One run, on the matrix's calibration cell (server pinned to the first CPU, load generator to the rest): the lab's
Locust client, stock FastHttpUser and, when installed, wrk (the referee). All instrumentation stays on (HDR,
response checks, CPU sampling). Prints RPS, RPS per load-generator core, and the ratios against their targets;
exits 1 if a target is missed.

    python scripts/bench_loadgen.py [--duration 10] [--users 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from core.host import free_port, machine_cpus
from lab.calibration import client_figures
from loadtests.load import Load
from loadtests.local import LocalLocust
from servers.local import LocalTargets
from servers.matrix import load

TARGETS = {"lab vs stock, per core": 3.0, "lab vs wrk": 0.45}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=64)
    args = parser.parse_args()
    cpus = machine_cpus()
    server_cpus, load_cpus = cpus[:1], cpus[1:] or cpus[:1]
    cell, scenario = load().calibration
    workdir = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    targets = LocalTargets(workdir, server_cpus)
    with LocalLocust(load_cpus, len(load_cpus), workdir / "load") as loads, targets.serve(cell, free_port()) as server:
        lean = Load(target=server.url, scenario=scenario, users=args.users, duration=args.duration)
        stock = Load(target=server.url, scenario=scenario, users=args.users, duration=args.duration, client="stock")
        results = {
            "lab client (Locust)": client_figures(loads.run(lean)),
            "stock FastHttpUser": client_figures(loads.run(stock)),
        }
        referee = loads.referee(lean)
    print(f"target: {cell.key} / {scenario}, server CPUs {list(server_cpus)}, load CPUs {list(load_cpus)}, "
          f"{args.users} connections, {args.duration:g} s each")  # fmt: skip
    print(f"{'client':<28}{'RPS':>10}{'RPS/core':>10}{'p50 µs':>9}{'p99 µs':>9}  client-bound")
    for label, r in results.items():
        print(f"{label:<28}{r.rps:>10.0f}{r.rps_per_core:>10.0f}{r.p50_us:>9}{r.p99_us:>9}  {r.client_bound}")
    print(f"{'wrk -t1 (referee)':<28}{referee.rps:>10.0f}" if referee else "wrk: not installed (apt-get install wrk)")
    lab, stock_figures = results["lab client (Locust)"], results["stock FastHttpUser"]
    ratios = {
        "lab vs stock, per core": lab.rps_per_core / stock_figures.rps_per_core if stock_figures.rps_per_core else None,
        "lab vs wrk": lab.rps / referee.rps if referee else None,
    }
    ok = True
    for name, target in TARGETS.items():
        value = ratios[name]
        verdict = "n/a" if value is None else ("ok" if value >= target else "MISSED")
        ok &= verdict != "MISSED"
        print(f"{name}: {value if value is None else round(value, 3)} (target >= {target}) {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
