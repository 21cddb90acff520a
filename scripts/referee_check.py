"""Benchmark: how far the referee (wrk) can be trusted in finished runs — Locust ÷ wrk, its noise and its runs.

Reads result bundles, measures nothing. Per bundle: how many points had wrk in more than one round; how many points'
Locust ÷ wrk (each wrk run beside the repeat it followed, as the verdict judges it: lab/verdict.py) lie in 0.9-1.05
from wrk's first run only and from all its runs; the spread (1 sd) of the points' log ratios from wrk's first run (the
ratio's noise, if no client is short of wrk); the verdicts; the median 95% half-width of the run's side-by-side
ratios. With two bundles or more, the verdicts the first and each other bundle agree on. With --show TEXT, each point
whose cell key holds TEXT: Locust's median as measured, each wrk run's RPS and the ratio of the repeat it followed.

    python scripts/referee_check.py results/RUN_A [results/RUN_B ...] [--show granian-uvloop]
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import Counter
from pathlib import Path

from lab.analysis.analyze import analyze
from lab.analysis.points import closed, points
from lab.bundle import load_bundle
from lab.verdict import REFEREE_ABOVE, REFEREE_SHARE
from servers.matrix import load
from servers.own_app import with_own


def in_range(ratio: float | None) -> bool:
    return ratio is not None and REFEREE_SHARE <= ratio <= REFEREE_ABOVE


def ratio(pairs: list[tuple[float, float]]) -> float | None:
    """Locust ÷ wrk over these wrk runs: the median of each run's repeat over it."""
    found = [rps / wrk for rps, wrk in pairs if wrk > 0]
    return statistics.median(found) if found else None


def report(root: Path, show: str | None = None) -> dict[tuple[str, str], str]:
    bundle = load_bundle(root)
    everything = points(bundle, with_own(load(), bundle.manifest.config.own))  # an own-app run's cells too
    found = closed(everything)
    verdicts, first, every, logs = {}, 0, 0, []
    several = [p for p in found if len(p.carriers) > 1]
    ceiling = {c.scenario: c.ceiling_rps for c in bundle.calibration.points} if bundle.calibration else {}
    for p in found:
        pairs = p.referee_pairs
        verdicts[(p.key, p.scenario)] = p.verdict(ceiling.get(p.scenario))[0]
        if not pairs:
            continue
        head = ratio(pairs[:1])
        first += in_range(head)
        every += in_range(ratio(pairs))
        logs.append(math.log(head))  # type: ignore[arg-type]
        if show and show in p.key:
            runs = ", ".join(f"{w:,.0f} RPS -> {x / w:.3f}x" for x, w in pairs)
            print(f"  {p.key} {p.scenario}: Locust {p.median:,.0f} RPS as measured; wrk {runs}")
    refereed = sum(1 for p in found if p.carriers)
    print(f"{bundle.run_id} ({root}): {len(found)} points, {refereed} with wrk, {len(several)} with wrk in more than "
          f"one round ({sum(len(p.carriers) for p in found)} wrk runs)")  # fmt: skip
    print(f"  Locust ÷ wrk in {REFEREE_SHARE:g}-{REFEREE_ABOVE:g}: {first} of {refereed} from wrk's first run only, "
          f"{every} from all its runs")  # fmt: skip
    if len(logs) > 1:
        print(f"  spread (1 sd) of the first-run log ratios: {statistics.pstdev(logs):.3f} (median ratio "
              f"{math.exp(statistics.median(logs)):.3f})")  # fmt: skip
    print(f"  verdicts: {dict(Counter(verdicts.values()))}")
    width = analyze(bundle, load()).half_width_pct
    print("  median 95% interval half-width of the side-by-side ratios: "
          + (f"±{width:.1f}%" if width is not None else "none measured"))  # fmt: skip
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--show", help="print each wrk run of the points whose cell key holds this text")
    args = parser.parse_args()
    found = [report(root, args.show) for root in args.bundles]
    for root, other in zip(args.bundles[1:], found[1:], strict=True):
        common = found[0].keys() & other.keys()
        moved = sorted(k for k in common if found[0][k] != other[k])
        print(f"verdicts {args.bundles[0].name} vs {root.name}: {len(common) - len(moved)} of {len(common)} agree"
              + "".join(f"; {k} {s}: {found[0][(k, s)]} -> {other[(k, s)]}" for k, s in moved))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
