"""Benchmark: is a ratio measured side by side the ratio of the two stacks measured alone?

Two servers sharing the server CPUs may not share them as each would run alone (a Rust runtime's threads, caches,
the kernel's grouping, one server starving the other's client). Per round, every cell of a set is started afresh on
the server CPUs (`--server-cpus`, default the lab's), then in a new random order: each cell loaded alone (the others
started but idle) for one window, and all of them loaded together (lab/measure/group.py) for one window, every window
after the same warm-up. For every two cells of the set: log(b ÷ a) alone and together in the same round, on the same
starts; the bias is together minus alone, with Student's t over the rounds, and the alone ratio's own interval beside it
(its windows are measured one after the other, so this machine's changes of speed sit in it). With `--set` more than
once, each set is measured in its own rounds; a set of two is a pair, a larger one a group of stacks loaded at once.

    python scripts/side_by_side_bias.py --rounds 8 \
        --set granian-uvloop-hyper-w1-fastapi,uvicorn-uvloop-httptools-w1-fastapi --scenario json
    python scripts/side_by_side_bias.py --json out.json ...   # every window's figures, for a later look

Prints per set and pair: alone b ÷ a (95% CI), together b ÷ a (95% CI), bias (95% CI), and the sd of one round's
log ratio alone and together (the precision each design gets from one window).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

from core.host import free_port, plan_cpus
from lab import config as run_config
from lab.analysis import stats
from lab.analysis.side_by_side import shared
from lab.measure import repeat
from lab.measure.group import measure_group
from lab.measure.instrument import Instrument
from lab.measure.referee import Refereed
from lab.measure.window import Work
from loadtests.local import LocalLocust
from servers.local import LocalTargets
from servers.matrix import load


def interval(logs: list[float]) -> str:
    """exp(mean) with its 95% interval over the rounds, as "x.xxx (lo-hi)".."""
    found = stats.side_by_side("", "a", "b", logs)
    if not math.isfinite(found.half_pct):
        return f"{found.ratio:.3f} (no interval)"
    return f"{found.ratio:.3f} ({found.low:.3f}–{found.high:.3f})"


def one_round(instrument: Instrument, targets: LocalTargets, cells: list, scenario: str, number: int, args) -> dict:
    """Every cell started; each alone and all together, in a random order; each window's RPS per cell."""
    from contextlib import ExitStack

    draw = random.Random(f"bias/{number}/{','.join(c.key for c in cells)}")
    started = list(cells)
    draw.shuffle(started)
    ports = [args.port + i for i in range(len(cells))]
    found: dict = {"round": number, "alone": {}, "together": {}, "saturated": None}
    with ExitStack() as stack:
        servers = {c.key: stack.enter_context(targets.serve(c, p)) for c, p in zip(started, ports, strict=True)}
        windows = [*(c.key for c in cells), "together"]
        draw.shuffle(windows)
        for which in windows:
            work = Work(scenario, 0.0, number, args.warmup, args.duration)
            if which == "together":
                record = measure_group(instrument, "bias", [servers[c.key] for c in cells], [c.key for c in started],
                                       work)  # fmt: skip
                window = shared(record)
                if window is None:
                    print(f"  round {number}: together FAILED: {record.failure}", file=sys.stderr)
                    continue
                found["together"] = dict(zip(window.keys, window.rates, strict=True))
                found["saturated"] = window.saturated
            else:
                server = servers[which]
                done = repeat.measure(instrument, server, server.cell, work, Refereed(None))
                if not done.ok or done.load is None:
                    print(f"  round {number}: {which} alone FAILED: {done.failure}", file=sys.stderr)
                    continue
                found["alone"][which] = done.load.rps
    return found


def summary(cells: list, rounds: list[dict]) -> list[str]:
    lines = []
    for a, b in combinations([c.key for c in cells], 2):
        both = [r for r in rounds if {a, b} <= set(r["alone"]) and {a, b} <= set(r["together"])]
        alone = [math.log(r["alone"][b] / r["alone"][a]) for r in both]
        together = [math.log(r["together"][b] / r["together"][a]) for r in both]
        bias = [t - x for t, x in zip(together, alone, strict=True)]
        sd = (f"{statistics.stdev(alone):.3f}", f"{statistics.stdev(together):.3f}") if len(both) > 1 else ("?", "?")
        lines.append(
            f"  {b} ÷ {a}: alone {interval(alone)}; together {interval(together)}; bias (together ÷ alone) "
            f"{interval(bias)}; one round's sd of log ratio alone {sd[0]}, together {sd[1]} ({len(both)} rounds)"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, help="cell keys, comma-separated; repeatable")
    parser.add_argument("--scenario", default="plaintext")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    args = parser.parse_args()
    matrix = load()
    cpus = plan_cpus(None, None, None)
    args.port = free_port()
    sets = [[matrix.cell_from_key(k.strip()) for k in s.split(",")] for s in args.set]
    config = run_config.parse(["--cell", sets[0][0].key, "--users", str(args.users), "--no-calibrate"], matrix)
    work = Path(tempfile.mkdtemp(prefix="bias-"))
    targets = LocalTargets(work, cpus.server, matrix=matrix)
    out: dict = {"scenario": args.scenario, "sets": []}
    began = time.monotonic()
    with LocalLocust(cpus.load, cpus.workers, work / "load") as loads:
        instrument = Instrument(config, matrix, "bias", loads, tuple(cpus.server), targets)
        try:
            for cells in sets:
                rounds = [one_round(instrument, targets, cells, args.scenario, n, args) for n in
                          range(1, args.rounds + 1)]  # fmt: skip
                out["sets"].append({"cells": [c.key for c in cells], "rounds": rounds})
                print(f"set of {len(cells)}, {args.scenario}, {args.rounds} rounds of {args.duration:g}-s windows:")
                print("\n".join(summary(cells, rounds)))
                unsaturated = sum(1 for r in rounds if r["saturated"] is False)
                print(f"  windows together with the server CPUs not saturated: {unsaturated} of {len(rounds)}")
        finally:
            instrument.close()
    print(f"took {time.monotonic() - began:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
