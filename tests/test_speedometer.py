"""The speedometer (the server CPU's speed during a window) and what the analysis makes of its samples."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from lab import results
from lab.bundle import load_bundle
from lab.measure import REFEREE_SLOW_BELOW, REFEREE_TRIES, Measure, Refereed
from lab.speedometer import SAMPLE_EVERY, Speedometer, in_window
from loadtests.load import RefereeResult
from tests.synthetic import make_bundle


def test_the_sampler_times_the_cpu_between_start_and_stop_and_only_then() -> None:
    meter = Speedometer((0,))
    try:
        meter.start()
        time.sleep(1.0)  # the sampler's first start (a Python process) is within this
        opened = time.time()
        time.sleep(0.5)
        closed = time.time()
        found = meter.stop()[0]
        inside = in_window(found, opened, closed)
        assert 0.5 / SAMPLE_EVERY * 0.6 <= len(inside) <= 0.5 / SAMPLE_EVERY + 2, len(inside)
        assert all(x > 0 for x in inside)
        time.sleep(0.3)  # stopped: nothing is sampled until the next start
        meter.start()
        assert all(when >= closed + 0.25 for when, _ in meter.stop()[0])
        child = meter.children[0]
    finally:
        meter.close()
    assert child.poll() is not None and meter.children == {}


def test_no_sampler_means_no_samples_not_a_failed_window() -> None:
    meter = Speedometer((0,))
    assert meter.stop() == {0: []}  # never started
    meter.close()


def speed_bundle(tmp_path: Path, referee_share: float) -> Path:
    """Three cells whose RPS follows the server CPU's speed share each window (1,000 samples/s per unit of share at
    full speed), at 30,000, 20,000 and 10,000 RPS at full speed; cell c's sampler reads 10% lower at full speed (its
    server slows the sampler), which must not read as a slow machine. wrk ran on a when the CPU was at referee_share."""
    rng = random.Random(5)
    keys = {"granian-uvloop-hyper-w1-raw": 30_000.0, "uvicorn-uvloop-httptools-w1-raw": 20_000.0,
            "hypercorn-asyncio-h11-w1-raw": 10_000.0}  # fmt: skip
    points, samples = {}, {}
    for key, level in keys.items():
        reads = 0.9 if key.startswith("hypercorn") else 1.0
        rps, sampled = [], []
        for _ in range(3):
            fast = rng.uniform(0.1, 0.95)  # the share of the window the CPU ran at full speed
            states = [1.0 if rng.random() < fast else 0.6 for _ in range(60)]
            share = sum(states) / len(states)
            rps.append(level * share * math.exp(rng.gauss(0, 0.01)))
            sampled.append([round(3_000_000 * reads * s) for s in states])
        points[(key, "plaintext", 0)] = rps
        samples[(key, "plaintext")] = sampled
    raw = "granian-uvloop-hyper-w1-raw"
    states = [1.0] * round(60 * (referee_share - 0.6) / 0.4) + [0.6] * round(60 * (1 - referee_share) / 0.4)
    return make_bundle(
        tmp_path, points, ceiling=None, samples=samples, referees={(raw, "plaintext"): 30_000.0 * referee_share},
        referee_samples={(raw, "plaintext"): [round(3_000_000 * s) for s in states]},
    )  # fmt: skip


def test_the_analysis_fits_the_cpus_speed_out_and_brings_locust_to_wrks_speed(tmp_path: Path) -> None:
    found = results.points(load_bundle(speed_bundle(tmp_path, referee_share=0.7)))
    noise = results.noise(found)["plaintext"]
    assert noise.beta is not None and 0.8 < noise.beta < 1.2, noise.beta
    assert noise.sd < 0.03 < noise.unspeeded_sd, (noise.sd, noise.unspeeded_sd)
    by_key = {p.key: p for p in results.closed(found)}
    slowed = by_key["hypercorn-asyncio-h11-w1-raw"]
    assert all(0.6 <= s <= 1.0 for s in slowed.shares.values())  # against its own full speed, not the run's
    for p in by_key.values():
        level = {"granian": 30_000, "uvicorn": 20_000, "hypercorn": 10_000}[p.cell.server]
        low, high = p.interval(noise)
        at_centre = level * math.exp(noise.centre)  # the adjusted values are at the run's mean speed
        assert low <= at_centre <= high, (p.key, low, at_centre, high)
    raw = by_key["granian-uvloop-hyper-w1-raw"]
    assert raw.referee_share is not None and abs(raw.referee_share - 0.7) < 0.02
    assert 0.95 < raw.referee_ratio(noise) < 1.05  # wrk ran slow, and Locust is judged at that speed
    assert raw.verdict(noise)[0] == "server"


def wrk_run(rps: float, speed: int) -> Refereed:
    found = RefereeResult(rps=rps, non_2xx=0, socket_errors=0, threads=1, seconds=2.0, cpu_utilization=0.5,
                          cpu_busy={"1": 0.5}, argv=["wrk"])  # fmt: skip
    return Refereed(found, "", None, [speed] * 40)


def scripted(runs: list[Refereed]) -> tuple[Measure, list[Refereed]]:
    measure = Measure(config=None, run_id="test", loads=None, server_cpus=(0,))  # type: ignore[arg-type]
    left = list(runs)
    measure.referee_once = lambda server, scenario: left.pop(0)  # type: ignore[method-assign]
    return measure, left


def test_wrk_runs_again_while_the_cpu_was_slow_and_the_fastest_cpus_run_is_kept() -> None:
    """Chosen by the CPU's speed during wrk's run, not by wrk's RPS (the slow run here has the higher RPS)."""
    first = [1000] * 60  # the point's first repeat: full speed 1000
    measure, left = scripted([wrk_run(30_000, 600), wrk_run(29_000, 950), wrk_run(1, 1000)])
    kept = measure.referee(None, "plaintext", first, REFEREE_TRIES)  # type: ignore[arg-type]
    assert kept.wrk and kept.wrk.rps == 29_000 and len(left) == 1
    assert kept.earlier == ["wrk run 1: 30,000 RPS with the server CPU at 0.60 of its full speed"]

    measure, left = scripted([wrk_run(10_000, 700), wrk_run(12_000, 600), wrk_run(11_000, 750), wrk_run(1, 1000)])
    kept = measure.referee(None, "plaintext", first, REFEREE_TRIES)  # type: ignore[arg-type]
    assert kept.wrk and kept.wrk.rps == 11_000 and len(kept.earlier) == 2 and len(left) == 1  # REFEREE_TRIES = 3

    measure, left = scripted([wrk_run(10_000, 600), wrk_run(1, 1000)])
    kept = measure.referee(None, "plaintext", first, tries=1)  # no time left in the budget: one run
    assert kept.wrk and kept.wrk.rps == 10_000 and not kept.earlier

    measure, left = scripted([wrk_run(10_000, 900), wrk_run(1, 1000)])  # fast enough: once
    assert measure.referee(None, "plaintext", first, REFEREE_TRIES).wrk.rps == 10_000 and len(left) == 1
    assert REFEREE_SLOW_BELOW == 0.8 and REFEREE_TRIES == 3
