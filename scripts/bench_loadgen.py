"""Benchmark: is the lab's load generator measuring the server, or itself?

On the matrix's calibration cell (server pinned to the first CPU, clients to the others), in one run, alternating
--pairs times: wrk (the referee) and the lab's Locust client with every instrument on (whole-answer checks, HDR per
request, CPU sampling, Locust's statistics), then stock FastHttpUser once. Prints each run's RPS and the client's
CPU µs per answer, and the medians' ratios against the goals: the lab client's RPS per core (1e6 / its µs per answer)
at least GOALS["per core"] of wrk's, and its RPS against the same server at least GOALS["rps"] of wrk's. Exits 1 when
a goal is missed.

    python scripts/bench_loadgen.py [--duration 5] [--users 64] [--pairs 3] [--cell KEY]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from core.host import free_port, plan_cpus
from loadtests.load import Load
from loadtests.local import LocalLocust
from servers.local import LocalTargets
from servers.matrix import load

GOALS = {"per core": 0.8, "rps": 0.9}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--cell", help="default: the matrix's calibration cell")
    args = parser.parse_args()
    matrix = load()
    cell, scenario = (matrix.cell_from_key(args.cell), "plaintext") if args.cell else matrix.calibration
    cpus = plan_cpus(None, None, None)  # the lab's own defaults: the server on the first CPU, the load on the rest
    server_cpus, load_cpus = cpus.server, cpus.load
    workdir = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    targets = LocalTargets(workdir, server_cpus)
    print(f"{cell.key} / {scenario}: server CPUs {list(server_cpus)}, load CPUs {list(load_cpus)} "
          f"({len(load_cpus)} Locust worker(s), wrk -t{len(load_cpus)}), {args.users} connections, "
          f"{args.duration:g} s each")  # fmt: skip
    print(f"{'client':<28}{'RPS':>10}{'client µs/answer':>18}{'RPS per client core':>21}")
    found: dict[str, list[tuple[float, float]]] = {"wrk": [], "lab": []}
    with LocalLocust(load_cpus, len(load_cpus), workdir / "load") as loads, targets.serve(cell, free_port()) as server:
        spec = Load(target=server.url, scenario=scenario, users=args.users, duration=args.duration, warmup=1.0)
        loads.run(Load(target=server.url, scenario=scenario, users=args.users, duration=1.0))  # warm both sides
        for _ in range(args.pairs):
            wrk = loads.referee(spec)
            if wrk is None:
                print("wrk: not installed (apt-get install wrk); nothing to compare with")
                return 1
            wrk_us = wrk.cpu_utilization * wrk.threads * 1e6 / wrk.rps
            found["wrk"].append((wrk.rps, wrk_us))
            lab = loads.run(spec)
            lab_us = lab.load_generator.cpu_seconds * 1e6 / lab.ok
            found["lab"].append((lab.rps, lab_us))
            for name, (rps, us) in (("wrk (referee)", (wrk.rps, wrk_us)), ("lab client (Locust)", (lab.rps, lab_us))):
                print(f"{name:<28}{rps:>10,.0f}{us:>18.2f}{1e6 / us:>21,.0f}")
        stock = loads.run(Load(target=server.url, scenario=scenario, users=args.users, duration=args.duration,
                               client="stock", warmup=1.0))  # fmt: skip
        stock_us = stock.load_generator.cpu_seconds * 1e6 / stock.ok
        print(f"{'stock FastHttpUser':<28}{stock.rps:>10,.0f}{stock_us:>18.2f}{1e6 / stock_us:>21,.0f}")
    med = {k: (statistics.median(r for r, _ in v), statistics.median(u for _, u in v)) for k, v in found.items()}
    ratios = {"per core": med["wrk"][1] / med["lab"][1], "rps": med["lab"][0] / med["wrk"][0]}
    print(
        f"medians: wrk {med['wrk'][0]:,.0f} RPS at {med['wrk'][1]:.2f} µs/answer; lab {med['lab'][0]:,.0f} RPS at "
        f"{med['lab'][1]:.2f} µs/answer; stock {stock_us / med['lab'][1]:.1f}x the lab client's CPU per answer"
    )
    ok = True
    for name, goal in GOALS.items():
        verdict = "met" if ratios[name] >= goal else "MISSED"
        ok &= verdict == "met"
        print(f"lab / wrk, {name}: {ratios[name]:.2f} (goal >= {goal}) {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
