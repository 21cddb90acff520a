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
from lab import bundle as record_bundle
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
    found: dict = {"round": number, "alone": {}, "together": {}, "sliced": {}, "saturated": None}
    with ExitStack() as stack:
        servers = {c.key: stack.enter_context(targets.serve(c, p)) for c, p in zip(started, ports, strict=True)}
        windows = [*(c.key for c in cells), "together", *(["sliced"] if args.slices else [])]
        draw.shuffle(windows)
        for which in windows:
            work = Work(scenario, 0.0, number, args.warmup, args.duration)
            if which in ("together", "sliced"):
                together = instrument.config
                if which == "sliced":  # each server alone in turns of --slices seconds: alone, closely interleaved
                    instrument.config = together.model_copy(
                        update={"pair_mode": "slices", "slice_seconds": args.slices}
                    )
                try:
                    record = measure_group(instrument, "bias", [servers[c.key] for c in cells],
                                           [c.key for c in started], work)  # fmt: skip
                finally:
                    instrument.config = together
                if args.keep:
                    record_bundle.write_record(args.keep / f"{which}-{'-'.join(c.key for c in cells)[:80]}-r{number}"
                                               ".json", record)  # fmt: skip
                window = shared(record)
                if window is None:
                    print(f"  round {number}: {which} FAILED: {record.failure}", file=sys.stderr)
                    continue
                found[which] = dict(zip(window.keys, window.rates, strict=True))
                found[f"{which}_cpu"] = {c.key: s.cpu_seconds for c, s in zip(record.cells, record.servers or [],
                                                                               strict=False)}  # fmt: skip
                found[f"{which}_irq"] = (record.servers or [None])[0].cpus_irq if record.servers else {}
                if which == "together":
                    found["saturated"] = window.saturated
            else:
                server = servers[which]
                done = repeat.measure(instrument, server, server.cell, work, Refereed(None))
                if not done.ok or done.load is None:
                    print(f"  round {number}: {which} alone FAILED: {done.failure}", file=sys.stderr)
                    continue
                found["alone"][which] = done.load.rps
                found.setdefault("alone_cpu", {})[which] = done.server.cpu_seconds / done.load.window.seconds
    return found


def logs(rounds: list[dict], design: str, a: str, b: str) -> list[float]:
    """Each round's log(b ÷ a) in one design (alone, together, sliced), where it measured both."""
    return [math.log(r[design][b] / r[design][a]) for r in rounds
            if {a, b} <= set(r.get(design, {})) and r[design][a] > 0 < r[design][b]]  # fmt: skip


def sd(values: list[float]) -> str:
    return f"{statistics.stdev(values):.3f}" if len(values) > 1 else "?"


def summary(cells: list, rounds: list[dict]) -> list[str]:
    lines = []
    for a, b in combinations([c.key for c in cells], 2):
        designs = {d: logs(rounds, d, a, b) for d in ("alone", "together", "sliced")}
        lines.append(f"  {b} ÷ {a}:")
        for name, found in designs.items():
            if found:
                lines.append(
                    f"    {name:9} {interval(found)}; one round's sd of log ratio {sd(found)} ({len(found)} rounds)"
                )
        for reference in ("alone", "sliced"):
            both = [r for r in rounds if all({a, b} <= set(r.get(d, {})) for d in ("together", reference))]
            bias = [x - y for x, y in zip(logs(both, "together", a, b), logs(both, reference, a, b), strict=True)]
            if bias:
                lines.append(f"    bias, together ÷ {reference}: {interval(bias)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, help="cell keys, comma-separated; repeatable")
    parser.add_argument("--scenario", default="plaintext")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument(
        "--slices",
        type=float,
        default=0.0,
        help="also each round: every server alone in turns of this many seconds (the group's slices)",
    )
    parser.add_argument(
        "--steer",
        action="store_true",
        help="process loopback's received packets on the load CPUs (RPS), not on the server CPUs",
    )
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    parser.add_argument("--keep", type=Path, help="write every side-by-side window's record into this folder")
    args = parser.parse_args()
    matrix = load()
    cpus = plan_cpus(None, None, None)
    args.port = free_port()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    sets = [[matrix.cell_from_key(k.strip()) for k in s.split(",")] for s in args.set]
    config = run_config.parse(["--cell", sets[0][0].key, "--users", str(args.users), "--no-calibrate"], matrix)
    work = Path(tempfile.mkdtemp(prefix="bias-"))
    targets = LocalTargets(work, cpus.server, matrix=matrix)
    out: dict = {"scenario": args.scenario, "sets": []}
    began = time.monotonic()
    steering = Path("/sys/class/net/lo/queues/rx-0/rps_cpus")
    before = steering.read_text().strip() if args.steer else None
    if args.steer:
        steering.write_text(f"{sum(1 << c for c in cpus.load):x}\n")
    try:
        run_sets(args, sets, matrix, cpus, config, targets, work, out)
    finally:
        if before is not None:
            steering.write_text(before + "\n")
    print(f"took {time.monotonic() - began:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


def run_sets(args, sets, matrix, cpus, config, targets, work, out) -> None:  # type: ignore[no-untyped-def]
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


if __name__ == "__main__":
    sys.exit(main())
