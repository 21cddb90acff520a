"""Benchmark: the A/B verdicts of finished runs, their precision per minute, and with --aa their false-positive rate.

Reads result bundles of runs with two variants, measures nothing. Per bundle: every B-against-A comparison (cell and
scenario) as the report states it — B ÷ A with its 95% interval, and how it was measured: side by side in pair rounds
(lab/pairs.py: the rounds, the seconds measured and the pair phase's wall time, one window's own half-width, the sd of
one round's log ratio) or paired by throughput round — then, over all the bundles, how many were significant, per
server and in all. For A/A runs (the same requirements twice, installed separately) every significant verdict is a
false positive: at 95% about 5% are expected, and --aa says whether the count is within what that allows (a binomial
test). --expect PCT: B is known to be PCT% slower (scripts/slow_variant.py): was it detected, and does the interval
hold PCT. With two bundles or more of the same A/B, whether each verdict reproduced.

    python -m lab run --variant A=uvicorn==0.54.0 --variant B=uvicorn==0.54.0 --cell uvicorn-asyncio-h11-w1-raw
    python scripts/ab_check.py results/RUN_1 [results/RUN_2 ...] [--aa] [--expect 3]
"""

from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict
from pathlib import Path

from scipy.stats import binomtest

from lab.analysis.analyze import analyze
from lab.bundle import load_bundle
from servers.matrix import load


def verdict(low: float, high: float) -> str:
    if low > 1:
        return "faster"
    if high < 1:
        return "slower"
    return "indistinguishable"


def pair_time(bundle_pairs: list, key: str, scenario: str) -> tuple[float, float]:
    """(seconds of measured windows, wall seconds of the pair phase) for one cell and scenario's pair rounds."""
    mine = [w for w in bundle_pairs if w.key == key and w.load is not None]
    measured = sum(w.load.window.seconds for w in mine if w.scenario == scenario)
    if not mine:
        return 0.0, 0.0
    return measured, max(w.load.window.end for w in mine) - min(w.load.window.start for w in mine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--aa", action="store_true", help="the runs are A/A: count the false positives")
    parser.add_argument("--expect", type=float, help="B is known to be this %% slower than A: was it found")
    args = parser.parse_args()
    total, hits = Counter(), Counter()
    said: dict[tuple[str, str], list[str]] = defaultdict(list)
    found_expected = []
    for root in args.bundles:
        bundle = load_bundle(root)
        analysis = analyze(bundle, load())
        if analysis.ab is None:
            raise SystemExit(f"ab_check: {root} is not a run with two variants (--ab or --variant twice)")
        envs = "; ".join(
            f"{e.variant}={','.join(e.requirements) or 'the image'}" for e in analysis.manifest.environments
        )
        print(f"{root.name}: {envs}")
        for v in analysis.versus:
            p = v.paired
            word = verdict(p.low, p.high)
            how = f"{p.rounds} rounds, sd {p.sd:.4f} over {p.group}'s pairs (df {p.df})"
            if p.side_by_side:
                measured, wall = pair_time(bundle.pairs, v.cell.key, v.scenario)
                within = f", one window ±{v.within_pct:.2f}%" if v.within_pct is not None else ""
                how = (
                    f"{p.rounds} pair rounds side by side, sd {p.sd:.4f} per round{within}; {measured:.0f} s measured, "
                    f"{wall:.0f} s of pair phase"
                )
                if v.unsaturated:
                    how += f"; {v.unsaturated} unsaturated"
            cost = ""
            if v.cost_paired is not None and math.isfinite(v.cost_paired.half_pct):
                c = v.cost_paired
                cost = f"; CPU/answer B/A {c.ratio:.4f} ({c.low:.4f}-{c.high:.4f})"
            print(
                f"  {v.label:<40} {v.scenario:<9} B/A {p.ratio:.4f} (95% CI {p.low:.4f}-{p.high:.4f}, "
                f"±{p.half_pct:.2f}%) {word:<17} {how}{cost}"
            )
            total[v.cell.server] += 1
            hits[v.cell.server] += p.significant
            said[(v.cell.key, v.scenario)].append(word)
            if args.expect is not None:
                expected = 1 / (1 + args.expect / 100)  # B's throughput when its CPU per request is PCT% more
                found_expected.append((p.high < 1, p.low <= expected <= p.high))
    n, k = sum(total.values()), sum(hits.values())
    for group in sorted(total):
        print(f"{group}: {hits[group]} of {total[group]} significant")
    print(f"all: {k} of {n} significant ({100 * k / n:.1f}%)" if n else "all: no comparisons")
    if args.aa and n:
        test = binomtest(k, n, 0.05, alternative="greater")
        print(f"A/A: {k} false positives in {n}; at 95% confidence 5% are expected; P(>= {k} | 5%) = {test.pvalue:.3f}")
    if found_expected:
        detected = sum(d for d, _ in found_expected)
        held = sum(h for _, h in found_expected)
        print(
            f"known slowdown {args.expect:g}%: detected (B slower at 95%) in {detected} of {len(found_expected)}; "
            f"the interval holds B/A = {1 / (1 + args.expect / 100):.4f} in {held} of {len(found_expected)}"
        )
    if len(args.bundles) > 1:
        again = [words for words in said.values() if len(words) > 1]
        same = sum(len(set(words)) == 1 for words in again)
        print(f"reproduced: {same} of {len(again)} verdicts the same in every bundle")


if __name__ == "__main__":
    main()
