"""Benchmark: does a run's answer survive a rerun? Two runs of one preset on one machine, measured back to back.

Reads the two bundles, measures nothing. Prints what issue's goals ask of them: conclusions significant in both that
flipped (the goal: none); the side-by-side ratios stated in both whose difference lies within their combined 95%
interval (the goal: 95% or more); each run's median ratio interval (the goal: ±2% or better); the FastAPI question
(granian against uvicorn · uvloop · httptools, plaintext and json) in both, with its interval; and per cell the RPS
alone of run B over run A, with how many moved more than 10%. Exit 1 when a goal is missed.

    python -m lab run --preset default && python -m lab run --preset default
    python scripts/rerun_check.py results/RUN_A results/RUN_B
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from lab.analysis.analyze import analyze
from lab.analysis.comparisons import between
from lab.bundle import load_bundle
from lab.report.compare import compare
from lab.report.findings import times
from servers.matrix import load

FASTAPI = ("granian-uvloop-hyper-w1-fastapi", "uvicorn-uvloop-httptools-w1-fastapi")
GOALS = {"agree": 0.95, "half_pct": 2.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    matrix = load()
    a, b = (analyze(load_bundle(p), matrix) for p in (args.a, args.b))
    result = compare(a, b)
    agreed = result.agreement
    held, flipped, stated = agreed.conclusions
    n = len(agreed.ratios)
    agree = sum(r.agree for r in agreed.ratios)
    print(f"runs {a.run_id} and {b.run_id}")
    print(f"conclusions stated in both: {stated}; significant and the same in both {held}; flipped {flipped}")
    share = 100 * agree / max(n, 1)
    print(f"ratios side by side in both: {n}; within their combined 95% interval {agree} ({share:.0f}%); inside A's "
          f"own interval {sum(r.inside for r in agreed.ratios)}")  # fmt: skip
    for r in sorted(agreed.ratios, key=lambda r: -abs(r.apart_pct))[:5]:
        print(f"  most apart: {r.cells[1]} ÷ {r.cells[0]}, {r.scenario}: A {times(r.a)}, B {times(r.b)}")
    widths = agreed.half_width
    print("median ratio interval: " + ", ".join(f"{name} ±{w:.1f}%" for name, w in zip("AB", widths, strict=True) if w))
    for scenario in ("plaintext", "json"):
        said = [between(x.comparisons, scenario, *FASTAPI) for x in (a, b)]
        print(f"FastAPI, {scenario}: uvicorn · uvloop · httptools ÷ granian · uvloop: A {times(said[0])}, B "
              f"{times(said[1])}")  # fmt: skip
    moved = [r for r in result.rows if not r.offered_rps and r.rps_ratio and abs(r.rps_ratio - 1) > 0.10]
    closed = [r for r in result.rows if not r.offered_rps and r.rps_ratio]
    if closed:
        ratios = [r.rps_ratio for r in closed if r.rps_ratio]
        middle = statistics.median(ratios)
        print(f"RPS alone, B ÷ A per cell: {min(ratios):.2f}–{max(ratios):.2f} (median {middle:.2f}); {len(moved)} of "
              f"{len(closed)} moved more than 10%")  # fmt: skip
    missed = flipped > 0 or agree < GOALS["agree"] * n or any(w is None or w > GOALS["half_pct"] for w in widths)
    print("goals " + ("missed" if missed else "met"))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
