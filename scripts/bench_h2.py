"""Benchmark: the lab's HTTP/2 client against h2load, its referee, in one run.

1. On the fastest h2c cell (default granian-uvloop-h2c-w1-raw), alternating --pairs times: h2load, then the lab's
   client through Locust, same connections and streams, same load CPUs. Each one's client CPU µs per answer gives
   its RPS per load core; goal: the lab's at least GOALS["per core"] of h2load's.
2. The lab's client at streams 1, 4 and 16 on the same cell: what the default (loadtests/load.py: DEFAULT_STREAMS)
   buys.
3. On server-limited h2c cells (--cells), alternating: Locust's RPS over h2load's, per pair; goal within
   GOALS["rps"].

    python scripts/bench_h2.py [--duration 3] [--users 64] [--streams 16] [--pairs 3] [--cells KEY ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from core.host import free_port, plan_cpus
from loadtests.load import DEFAULT_STREAMS, Load
from loadtests.local import LocalLocust
from servers.local import LocalTargets
from servers.matrix import load

GOALS = {"per core": (0.8, None), "rps": (0.9, 1.05)}
FASTEST = "granian-uvloop-h2c-w1-raw"
SERVER_LIMITED = ["hypercorn-uvloop-h2c-w1-raw", "uvicorn-uvloop-h2c-w1-raw", "granian-uvloop-h2c-w1-fastapi"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--streams", type=int, default=DEFAULT_STREAMS)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--fastest", default=FASTEST)
    parser.add_argument("--cells", nargs="*", default=SERVER_LIMITED)
    parser.add_argument("--no-streams-sweep", action="store_true")
    args = parser.parse_args()
    matrix = load()
    cpus = plan_cpus(None, None, None)
    workdir = Path(tempfile.mkdtemp(prefix="lab-bench-h2-"))
    targets = LocalTargets(workdir, cpus.server)
    print(f"server CPUs {list(cpus.server)}, load CPUs {list(cpus.load)}; {args.users} connections x {args.streams} "
          f"streams, {args.duration:g} s per run")  # fmt: skip
    ok = True
    with LocalLocust(cpus.load, len(cpus.load), workdir / "load") as loads:

        def spec(url: str, streams: int = args.streams) -> Load:
            return Load(target=url, users=args.users, duration=args.duration, warmup=1.0, http="h2", streams=streams)

        def both(url: str) -> tuple[tuple[float, float], tuple[float, float], int]:
            ref = loads.referee(spec(url))
            assert ref is not None, "h2load is not installed (Debian: nghttp2-client)"
            lab = loads.run(spec(url))
            ref_us = ref.cpu_utilization * ref.threads * 1e6 / ref.rps
            lab_us = lab.load_generator.cpu_seconds * 1e6 / lab.ok
            return (ref.rps, ref_us), (lab.rps, lab_us), sum(lab.errors.values())

        print(f"\n1. {args.fastest}: per load core")
        print(f"{'client':<22}{'RPS':>10}{'client µs/answer':>18}{'RPS per core':>14}")
        found: dict[str, list[tuple[float, float]]] = {"h2load": [], "lab": []}
        with targets.serve(matrix.cell_from_key(args.fastest), free_port()) as server:
            loads.run(spec(server.url).model_copy(update={"duration": 1.0}))  # warm both sides
            for _ in range(args.pairs):
                ref, lab, errors = both(server.url)
                found["h2load"].append(ref)
                found["lab"].append(lab)
                for name, (rps, us) in (("h2load", ref), ("lab client (Locust)", lab)):
                    print(f"{name:<22}{rps:>10,.0f}{us:>18.2f}{1e6 / us:>14,.0f}")
                if errors:
                    print(f"  the lab client counted {errors} errors")
            if not args.no_streams_sweep:
                print(f"\n2. {args.fastest}: the lab client's streams per connection")
                for streams in (1, 4, 16):
                    lab = loads.run(spec(server.url, streams))
                    us = lab.load_generator.cpu_seconds * 1e6 / lab.ok
                    p99 = lab.latency.percentiles_us.get("p99", 0) / 1000
                    print(f"streams {streams:>3}: {lab.rps:>9,.0f} RPS, {us:6.2f} client µs/answer, p99 {p99:.1f} ms")
        med = {k: (statistics.median(r for r, _ in v), statistics.median(u for _, u in v)) for k, v in found.items()}
        per_core = med["h2load"][1] / med["lab"][1]
        ok &= report("per core", per_core)

        print("\n3. server-limited cells: Locust RPS / h2load RPS, per pair")
        ratios: list[float] = []
        for key in args.cells:
            with targets.serve(matrix.cell_from_key(key), free_port()) as server:
                loads.run(spec(server.url).model_copy(update={"duration": 1.0}))
                for _ in range(max(1, args.pairs - 1)):
                    ref, lab, errors = both(server.url)
                    ratios.append(lab[0] / ref[0])
                    print(f"{key:<34} h2load {ref[0]:>9,.0f}  lab {lab[0]:>9,.0f}  ratio {ratios[-1]:.2f}"
                          f"{f'  ({errors} errors)' if errors else ''}")  # fmt: skip
        if ratios:
            print(f"ratios: min {min(ratios):.2f}, median {statistics.median(ratios):.2f}, max {max(ratios):.2f}")
            ok &= report("rps", statistics.median(ratios))
    return 0 if ok else 1


def report(name: str, ratio: float) -> bool:
    low, high = GOALS[name]
    met = ratio >= low and (high is None or ratio <= high)
    goal = f">= {low}" if high is None else f"{low}-{high}"
    print(f"lab / h2load, {name}: {ratio:.2f} (goal {goal}) {'met' if met else 'MISSED'}")
    return met


if __name__ == "__main__":
    sys.exit(main())
