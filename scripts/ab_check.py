"""Benchmark: the A/B verdicts of finished runs, and with --aa their false-positive rate.

Reads result bundles of runs with two variants, measures nothing. Per bundle: every B-against-A comparison (cell and
scenario) as the report states it — B ÷ A with its 95% interval, the rounds paired, the pooled sd of one round's
log ratio and whose pairs gave it — then, over all the bundles, how many were significant, per server and in all.
For A/A runs (the same requirements twice, installed separately) every significant verdict is a false positive:
at 95% about 5% are expected, and --aa says whether the count is within what that allows (a binomial test).
With two bundles or more of the same A/B, whether each verdict reproduced.

    python -m lab run --variant A=uvicorn==0.54.0 --variant B=uvicorn==0.54.0 --cell uvicorn-asyncio-h11-w1-raw
    python scripts/ab_check.py results/RUN_1 [results/RUN_2 ...] [--aa]
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from scipy.stats import binomtest

from lab.analysis import analyze
from lab.bundle import load_bundle
from servers.matrix import load


def verdict(ratio: float, low: float, high: float) -> str:
    if low > 1:
        return "faster"
    if high < 1:
        return "slower"
    return "indistinguishable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--aa", action="store_true", help="the runs are A/A: count the false positives")
    args = parser.parse_args()
    total, hits = Counter(), Counter()
    said: dict[tuple[str, str], list[str]] = defaultdict(list)
    for root in args.bundles:
        analysis = analyze(load_bundle(root), load())
        if analysis.ab is None:
            raise SystemExit(f"ab_check: {root} is not a run with two variants (--ab or --variant twice)")
        envs = "; ".join(
            f"{e.variant}={','.join(e.requirements) or 'the image'}" for e in analysis.manifest.environments
        )
        print(f"{root.name}: {envs}")
        for v in analysis.versus:
            p = v.paired
            word = verdict(p.ratio, p.low, p.high)
            print(
                f"  {v.label:<48} {v.scenario:<9} B/A {p.ratio:.4f}"
                f" (95% CI {p.low:.4f}-{p.high:.4f}, ±{p.half_pct:.1f}%)"
                f" {word:<17} {p.rounds} rounds, sd {p.sd:.4f} over {p.group}'s pairs (df {p.df})"
            )
            total[p.group] += 1
            hits[p.group] += p.significant
            said[(v.cell.key, v.scenario)].append(word)
    n, k = sum(total.values()), sum(hits.values())
    for group in sorted(total):
        print(f"{group}: {hits[group]} of {total[group]} significant")
    print(f"all: {k} of {n} significant ({100 * k / n:.1f}%)" if n else "all: no comparisons")
    if args.aa and n:
        test = binomtest(k, n, 0.05, alternative="greater")
        print(f"A/A: {k} false positives in {n}; at 95% confidence 5% are expected; P(>= {k} | 5%) = {test.pvalue:.3f}")
    if len(args.bundles) > 1:
        again = [words for words in said.values() if len(words) > 1]
        same = sum(len(set(words)) == 1 for words in again)
        print(f"reproduced: {same} of {len(again)} verdicts the same in every bundle")


if __name__ == "__main__":
    main()
