"""Benchmark: how this machine's own speed moves, and how much of a window's RPS spread it explains.

Four measurements, one per mode:

- windows (default): one cell's server on the first CPU, wrk on the others, `--windows` closed-model windows of
  `--seconds` each. Right before every window, and PROBE_SETTLE after it (as in a run), the lab's 10-ms probe
  (lab/fingerprint.py: probe) times the server CPU. Printed: the probes as shares of the run's full speed (their 90th
  percentile, as lab/measure.py judges them), each window's RPS, how many probes fell below lab/measure.py's
  SLOW_BELOW, the correlation of RPS with the mean of the two probes, and the RPS spread of all windows beside that of
  the windows with both probes at full speed (what re-measuring the slow ones buys).
- `--trace SECONDS`: nothing but a ~3-ms slice of the probe's workload on one CPU every TRACE_EVERY seconds. Printed:
  the share of the time the CPU ran below SLOW_BELOW of its full speed, how fast it ran then, how long its slow and
  full-speed spells lasted, and the spread (1 sd) of the CPU's mean speed over windows as long as a run's (`--seconds`):
  the floor under any window's RPS spread on this machine, whoever loads the server.
- `--clients N`: the lab's client (through a local Locust master and worker, warm-up then window, as a run does) and
  wrk, N windows each, alternating on one warm server, the speedometer (lab/speedometer.py) sampling the server CPU
  in every window. Printed: each window's RPS and mean CPU speed, each client's spread, the spread of the paired ratio
  lab ÷ wrk (whether the lab's client adds noise of its own), and lab ÷ wrk at equal CPU speed with its 95% interval
  (least squares of log RPS = a + d * [lab] + beta * log speed): whether the lab gets more or less than wrk from
  that server, with the machine's speed taken out. With `--preset NAME`: every cell and scenario of that preset wrk
  can replay (one server start per cell), then a table of lab ÷ wrk at equal CPU speed against the 0.9-1.05 band
  (lab/verdict.py: REFEREE_SHARE, REFEREE_ABOVE).
- `--speedometer N`: N pairs of wrk windows on one warm server, one with the speedometer (lab/speedometer.py)
  sampling the server CPU, one without, alternating. Printed: what the speedometer costs the server (the paired RPS
  ratio, mean and standard error), and over the windows it sampled: the RPS spread, its correlation with the
  window's mean speed, and the spread left once log RPS = a + beta * log speed is fitted (what a run's analysis does).

    python scripts/probe_noise.py [--cell KEY] [--scenario plaintext] [--windows 40] [--seconds 2]
    python scripts/probe_noise.py --trace 60 [--seconds 3]
    python scripts/probe_noise.py --clients 10 [--seconds 3] [--preset default]
    python scripts/probe_noise.py --speedometer 15 [--seconds 3]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from core.host import free_port, plan_cpus
from core.speed import PROBE_INSERTS, Speedometer, inserts_per_second, probe
from lab import config as run_config
from lab.analysis import stats
from lab.measure import referee as referee_window
from lab.measure import repeat as repeat_window
from lab.measure.conditions import SLOW_BELOW
from lab.measure.instrument import PROBE_SETTLE, Instrument
from lab.measure.referee import Refereed
from lab.measure.speed import full_speed, in_window
from lab.measure.window import Work
from lab.verdict import REFEREE_ABOVE, REFEREE_SHARE
from loadtests.load import Load
from loadtests.local import LocalLocust
from loadtests.referee import can_referee, wrk
from servers.local import LocalTargets
from servers.matrix import Cell, load

TRACE_EVERY = 0.025  # seconds between the trace's samples
TRACE_INSERTS = PROBE_INSERTS // 4  # one sample: a quarter of the probe's pass, ~3 ms here
BAND = (REFEREE_SHARE, REFEREE_ABOVE)  # where lab ÷ wrk should lie on a server-limited cell (issue #12's goal)


def spread(values: list[float]) -> str:
    return f"{statistics.stdev(values) / statistics.fmean(values):.1%}" if len(values) >= 2 else "-"


def windows(args: argparse.Namespace, server_cpus: list[int], load_cpus: list[int]) -> None:
    rows: list[tuple[float, float, float]] = []
    print(f"{args.cell} {args.scenario}: server CPU {server_cpus[0]}, wrk on {list(load_cpus)}, {args.users} users")
    cell = load().cell_from_key(args.cell)
    with LocalTargets(Path(tempfile.mkdtemp(prefix="lab-noise-")), server_cpus).serve(cell, free_port()) as server:
        spec = Load(target=server.url, scenario=args.scenario, users=args.users, duration=args.seconds)
        wrk(spec.model_copy(update={"duration": 1.0}), tuple(load_cpus))  # warm-up
        for _ in range(args.windows):
            before = probe(server_cpus[0])
            found = wrk(spec, tuple(load_cpus))
            if found is None:
                raise SystemExit("probe_noise: needs wrk (apt-get install wrk)")
            time.sleep(PROBE_SETTLE)
            rows.append((before, found.rps, probe(server_cpus[0])))
    probes = sorted([r[0] for r in rows] + [r[2] for r in rows])
    full = full_speed(probes) or 1.0
    for i, (before, rps, after) in enumerate(rows, 1):
        mark = " slow" if min(before, after) < SLOW_BELOW * full else ""
        print(f"{i:3d}  probe before {before / full:4.0%}  {rps:9,.0f} RPS  probe after {after / full:4.0%}{mark}")
    shares = [p / full for p in probes]
    rps = [r[1] for r in rows]
    fast = [r[1] for r in rows if min(r[0], r[2]) >= SLOW_BELOW * full]
    correlation = float(np.corrcoef(rps, [(r[0] + r[2]) / 2 for r in rows])[0, 1])
    slow = [s for s in shares if s < SLOW_BELOW]
    at = f", at a median {statistics.median(slow):.0%} of it" if slow else ""
    print(f"full speed {full:,.0f} inserts/s; probes below {SLOW_BELOW:.0%} of it: {len(slow)} of {len(shares)}{at}")
    print(f"RPS ~ mean of the two probes: correlation {correlation:.2f}")
    print(f"RPS spread (1 sd): all {len(rps)} windows {spread(rps)}; the {len(fast)} with both probes at full speed "
          f"{spread(fast)}")  # fmt: skip


def spells(slow: list[bool], every: float) -> dict[bool, list[float]]:
    """The lengths in seconds of the runs of equal states, by state."""
    found: dict[bool, list[float]] = {True: [], False: []}
    start = 0
    for i in range(1, len(slow) + 1):
        if i == len(slow) or slow[i] != slow[start]:
            found[slow[start]].append((i - start) * every)
            start = i
    return found


def trace(args: argparse.Namespace, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    while (now := time.monotonic()) - started < args.trace:
        samples.append((now - started, inserts_per_second(TRACE_INSERTS, 1)))
        time.sleep(max(0.0, TRACE_EVERY - (time.monotonic() - now)))
    speeds = [s for _, s in samples]
    full = full_speed(speeds) or 1.0
    slow = [s < SLOW_BELOW * full for s in speeds]
    every = args.trace / len(samples)
    found = spells(slow, every)
    print(f"CPU {cpu}: {len(samples)} samples in {args.trace:g} s (one every {every * 1000:.0f} ms, "
          f"{TRACE_INSERTS:,} inserts each); full speed {full:,.0f} inserts/s")  # fmt: skip
    slow_speeds = [s / full for s, x in zip(speeds, slow, strict=True) if x]
    at = f", at a median {statistics.median(slow_speeds):.0%} of full speed" if slow_speeds else ""
    print(f"slow (below {SLOW_BELOW:.0%}): {sum(slow) / len(slow):.0%} of the time{at}")
    for state, name in ((True, "slow"), (False, "full-speed")):
        lengths = found[state]
        if lengths:
            print(f"{name} spells: {len(lengths)}, median {statistics.median(lengths):.2f} s, "
                  f"mean {statistics.fmean(lengths):.2f} s, longest {max(lengths):.2f} s")  # fmt: skip
    per = max(1, round(args.seconds / every))
    means = [statistics.fmean(speeds[i : i + per]) for i in range(0, len(speeds) - per + 1, per)]
    if len(means) >= 2:
        noise = statistics.stdev(means) / statistics.fmean(means)
        z = float(scipy_stats.norm.ppf(0.5 + stats.CONFIDENCE / 2))
        need = math.ceil((z * noise / 0.05) ** 2)
        print(f"mean speed over {len(means)} windows of {args.seconds:g} s: spread {noise:.1%} (1 sd) — a cell's "
              f"median within +-5% at 95% would need about {need} such windows")  # fmt: skip


Pair = tuple[float, float, float, float]  # (lab RPS, its window's mean CPU speed, wrk RPS, its mean CPU speed)


def alternate(measure: Instrument, server: object, cell: Cell, scenario: str, pairs: int) -> list[Pair]:
    """`pairs` of the run's own measurements on one warm server: a repeat (warm-up, window) then the referee (wrk),
    the speedometer on in both, as a run measures a point's first round."""
    rows: list[Pair] = []
    c = measure.config
    repeat_window.measure(
        measure, server, cell, Work(scenario, 0.0, 0, 1.0, 1.0), Refereed(None)
    )  # warms the master, worker, server
    for i in range(1, pairs + 1):
        lab = repeat_window.measure(measure, server, cell, Work(scenario, 0.0, i, c.warmup, c.duration), Refereed(None))
        referee = referee_window.measure(measure, server, scenario)
        if referee.wrk is None or lab.load is None or lab.conditions is None:
            raise SystemExit(f"probe_noise: no pair: {referee.why or lab.failure}")
        lab_speed = statistics.fmean(lab.conditions.speed_samples or [math.nan])
        wrk_speed = statistics.fmean(referee.speed or [math.nan])
        print(f"{i:3d}  lab {lab.load.rps:9,.0f} RPS (CPU mean {lab_speed:,.0f})  "
              f"wrk {referee.wrk.rps:9,.0f} RPS (CPU mean {wrk_speed:,.0f})", flush=True)  # fmt: skip
        rows.append((lab.load.rps, lab_speed, referee.wrk.rps, wrk_speed))
    return rows


def at_equal_speed(rows: list[Pair]) -> tuple[stats.Comparison, stats.Noise]:
    """lab ÷ wrk with the CPU's speed taken out, as a run's analysis takes it out (lab/stats.py): each pair a block,
    log RPS = client + pair + beta * log speed; the interval from Student's t at the fit's degrees of freedom."""
    rps = {"lab": {i: r[0] for i, r in enumerate(rows)}, "wrk": {i: r[2] for i, r in enumerate(rows)}}
    speeds = {"lab": {i: r[1] for i, r in enumerate(rows)}, "wrk": {i: r[3] for i, r in enumerate(rows)}}
    noise = stats.blocked_noise(rps, speeds)
    found = stats.compare("", "client", "lab", "wrk", noise.adjusted("lab", rps["lab"]),
                          noise.adjusted("wrk", rps["wrk"]), noise)  # fmt: skip
    return found, noise


def said(fit: stats.Comparison, noise: stats.Noise) -> str:
    beta = f"{noise.beta:.2f}" if noise.beta is not None else "not fitted"
    return f"{fit.ratio:.3f} (95% {fit.low:.3f}–{fit.high:.3f}); beta {beta}; spread left {noise.percent:.1f}%"


def clients(args: argparse.Namespace, server_cpus: list[int], load_cpus: list[int]) -> None:
    """Alternating lab and wrk windows on one server, the speedometer on in both: the lab's RPS over wrk's as measured,
    and at equal CPU speed. With --preset, every cell and scenario of that preset wrk can replay, one server start per
    cell, and a table of lab ÷ wrk at equal speed against the 0.9-1.05 band at the end."""
    matrix = load()
    if args.preset:
        preset = matrix.preset(args.preset)
        stand_in = "http://127.0.0.1:8000"
        replayable = [s for s in preset.scenarios if can_referee(Load(target=stand_in, scenario=matrix.scenario(s)))]
        points = [(c, [s for s in replayable if matrix.supports(c, s)]) for c in preset.cells]
    else:
        points = [(matrix.cell_from_key(args.cell), [args.scenario])]
    config = run_config.parse(
        ["--cell", points[0][0].key, "--users", str(args.users), "--duration", str(args.seconds), "--warmup", "1",
         "--referee-seconds", str(args.seconds), "--server-cpus", ",".join(map(str, server_cpus)),
         "--load-cpus", ",".join(map(str, load_cpus)), "--load-workers", "1"],
        matrix,
    )  # fmt: skip
    print(f"server CPU {server_cpus[0]}, load on {list(load_cpus)}, {args.users} users, {args.clients} pairs of "
          f"{args.seconds:g}-s windows per point, the lab's after a 1-s warm-up, the speedometer on")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="lab-noise-"))
    found: list[tuple[str, str, stats.Comparison]] = []
    with LocalLocust(tuple(load_cpus), 1, workdir / "load") as locust:
        measure = Instrument(
            config, matrix, "probe", locust, tuple(server_cpus), LocalTargets(workdir, tuple(server_cpus))
        )
        try:
            for cell, scenarios in points:
                with LocalTargets(workdir, tuple(server_cpus), matrix=matrix).serve(cell, free_port()) as server:
                    for scenario in scenarios:
                        print(f"{cell.key} {scenario}:", flush=True)
                        rows = alternate(measure, server, cell, scenario, args.clients)
                        labs, wrks = [r[0] for r in rows], [r[2] for r in rows]
                        ratios = [math.log(r[0] / r[2]) for r in rows]
                        print(f"spread (1 sd): lab {spread(labs)}, wrk {spread(wrks)}; lab / wrk as measured: mean "
                              f"{statistics.fmean(labs) / statistics.fmean(wrks):.3f}, paired log-ratio sd "
                              f"{statistics.stdev(ratios):.3f}")  # fmt: skip
                        fit, noise = at_equal_speed(rows)
                        print(f"lab / wrk at equal CPU speed: {said(fit, noise)}", flush=True)
                        found.append((cell.key, scenario, fit))
        finally:
            measure.close()
    if len(found) > 1:
        print(f"\nlab / wrk at equal CPU speed, {len(found)} points (the band {BAND[0]}–{BAND[1]}):")
        for key, scenario, fit in found:
            where = "inside" if BAND[0] <= fit.ratio <= BAND[1] else "OUTSIDE"
            print(f"  {key:40s} {scenario:10s} {fit.ratio:.3f} (95% {fit.low:.3f}–{fit.high:.3f})  {where}")
        ratios = [f[2].ratio for f in found]
        inside = sum(BAND[0] <= r <= BAND[1] for r in ratios)
        print(f"{inside} of {len(found)} inside; median {statistics.median(ratios):.3f}, "
              f"range {min(ratios):.3f}–{max(ratios):.3f}")  # fmt: skip


def speedometer(args: argparse.Namespace, server_cpus: list[int], load_cpus: list[int]) -> None:
    cell = load().cell_from_key(args.cell)
    print(f"{args.cell} {args.scenario}: server CPU {server_cpus[0]}, wrk on {list(load_cpus)}, {args.users} users, "
          f"{args.seconds:g}-s windows, with and without the speedometer")  # fmt: skip
    pairs: list[tuple[float, float, float]] = []  # (RPS with, mean speed during it, RPS without)
    meter = Speedometer(tuple(server_cpus))
    try:
        with LocalTargets(Path(tempfile.mkdtemp(prefix="lab-noise-")), server_cpus).serve(cell, free_port()) as server:
            spec = Load(target=server.url, scenario=args.scenario, users=args.users, duration=args.seconds)
            meter.start()  # the sampler's process starts here, not in the first window
            wrk(spec.model_copy(update={"duration": 1.0}), tuple(load_cpus))
            meter.stop()
            for i in range(1, args.speedometer + 1):
                meter.start()
                started = time.time()
                timed = wrk(spec, tuple(load_cpus))
                ended = time.time()
                samples = [x for found in meter.stop().values() for x in in_window(found, started, ended)]
                bare = wrk(spec, tuple(load_cpus))
                if timed is None or bare is None:
                    raise SystemExit("probe_noise: needs wrk (apt-get install wrk)")
                speed = statistics.fmean(samples) if samples else math.nan
                print(f"{i:3d}  with {timed.rps:9,.0f} RPS ({len(samples)} samples, mean {speed:,.0f})  "
                      f"without {bare.rps:9,.0f} RPS")  # fmt: skip
                pairs.append((timed.rps, speed, bare.rps))
    finally:
        meter.close()
    cost = [math.log(a / c) for a, _, c in pairs]
    se = statistics.stdev(cost) / math.sqrt(len(cost))
    print(f"cost: RPS with / without {math.exp(statistics.fmean(cost)):.3f} (log mean {statistics.fmean(cost):+.3f}, "
          f"standard error {se:.3f})")  # fmt: skip
    rps = np.log([a for a, _, _ in pairs])
    speed = np.log([b for _, b, _ in pairs])
    beta = float(np.polyfit(speed, rps, 1)[0])
    left = rps - beta * speed
    correlation = float(np.corrcoef(speed, rps)[0, 1])
    print(f"with it: RPS spread {np.std(rps, ddof=1):.1%} (1 sd of log RPS); correlation with the window's mean speed "
          f"{correlation:.2f}; fitted beta {beta:.2f}; spread left {np.std(left, ddof=2):.1%}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="granian-uvloop-hyper-w1-raw")
    parser.add_argument("--scenario", default="plaintext")
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=None, help="window length (2 s; 3 s with --trace/--clients)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--trace", type=float, metavar="SECONDS", help="trace the server CPU's speed this long")
    mode.add_argument("--clients", type=int, metavar="N", help="N lab and N wrk windows, alternating")
    parser.add_argument("--preset", help="with --clients: every cell and scenario of this preset (matrix.toml)")
    mode.add_argument("--speedometer", type=int, metavar="N", help="N wrk windows with it and N without, alternating")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 2.0 if args.trace is None and args.clients is None and args.speedometer is None else 3.0
    if args.preset is not None and args.clients is None:
        parser.error("--preset goes with --clients N")
    if args.preset is not None and args.preset not in load().presets:
        parser.error(f"unknown preset {args.preset!r}; choose one of {', '.join(load().presets)}")
    if args.trace is not None and not 1 <= args.trace <= 600:
        parser.error("--trace takes 1-600 seconds")
    for name in ("clients", "speedometer"):
        if getattr(args, name) is not None and not 3 <= getattr(args, name) <= 100:
            parser.error(f"--{name} takes 3-100 windows")
    cpus = plan_cpus(None, None, None)  # the lab's own defaults: the server on the first CPU, the load on the rest
    server_cpus, load_cpus = list(cpus.server), list(cpus.load)
    if args.trace is not None:
        trace(args, server_cpus[0])
    elif args.clients is not None:
        clients(args, server_cpus, load_cpus)
    elif args.speedometer is not None:
        speedometer(args, server_cpus, load_cpus)
    else:
        windows(args, server_cpus, load_cpus)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
