"""The speedometer (the server CPU's speed during a window), the referee's ratio as measured, and the rule that runs wrk
again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.host import ROOT
from core.speed import SAMPLE_EVERY, Speedometer
from lab.analysis import points as results
from lab.bundle import load_bundle
from lab.measure.speed import in_window
from lab.report import summary
from lab.run import referee_rule
from servers.matrix import load
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


def test_locust_short_of_wrk_with_a_client_that_had_room_is_unclear_not_client(tmp_path: Path) -> None:
    """wrk ran in a slow spell of its own (Locust's repeat 20,000 beside wrk's 26,000: 0.77 of it) while the client's
    busiest CPU was half busy: the ratio alone does not make the client the limit (it once did: a client with half its
    CPU idle called `client`)."""
    x = "uvicorn-uvloop-httptools-w1-raw"
    root = make_bundle(tmp_path, {(x, "plaintext", 0): [20_000, 20_100, 19_900]},
                       referees={(x, "plaintext"): 26_000.0}, ceiling=None)  # fmt: skip
    (point,) = results.closed(results.points(load_bundle(root), load()))
    assert point.referee_ratio == pytest.approx(20_000 / 26_000)
    limit, reason = point.verdict(None)
    assert limit == "unclear" and "the client had room" in reason and "50% busy" in reason, reason
    busy = make_bundle(tmp_path / "busy", {(x, "plaintext", 0): [20_000, 20_100, 19_900]},
                       referees={(x, "plaintext"): 26_000.0}, ceiling=22_000.0)  # fmt: skip
    (near,) = results.closed(results.points(load_bundle(busy), load()))
    limit, reason = near.verdict(22_000.0)  # 20,000 is 91% of the client's calibrated ceiling: at its limit
    assert limit == "client" and "of its calibrated ceiling" in reason, reason


def test_wrk_in_later_rounds_is_paired_with_its_round_and_the_median_ratio_judged(tmp_path: Path) -> None:
    """wrk's first run caught a slow spell (15,000 beside Locust's 20,000); its runs in rounds 2 and 3 did not."""
    x, y = "uvicorn-uvloop-httptools-w1-raw", "granian-uvloop-hyper-w1-raw"
    root = make_bundle(
        tmp_path, {(x, "plaintext", 0): [20_000, 20_100, 19_900], (y, "plaintext", 0): [30_000, 30_150, 29_850]},
        referees={(x, "plaintext"): [15_000, 20_600, 20_400], (y, "plaintext"): 30_300.0}, ceiling=None,
    )  # fmt: skip
    found = {p.key: p for p in results.closed(results.points(load_bundle(root), load()))}
    point = found[x]
    assert [c.repeat for c in point.carriers] == [1, 2, 3] and point.referee_rps == 20_400
    ratio = point.referee_ratio
    assert ratio is not None and 0.97 < ratio < 0.99  # the median of 1.33, 0.976, 0.975: not the first run's 1.33
    limit, reason = point.verdict(None)
    assert limit == "server" and "wrk's 3 rounds" in reason, reason
    assert 0.98 < (found[y].referee_ratio or 0) < 1.0 and "in wrk's round" in found[y].verdict(None)[1]
    row = next(r for r in summary.summarize(load_bundle(root), load()) if r.key == x)
    assert row.referee_rps == 20_400 and row.lab_vs_referee == round(ratio, 3)
    checked = subprocess.run(
        [sys.executable, "scripts/referee_check.py", str(root), "--show", "uvicorn"], cwd=ROOT, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "in 0.9-1.05: 1 of 2 from wrk's first run only, 2 from all its runs" in checked.stdout, checked.stdout
    shown = next(line for line in checked.stdout.splitlines() if line.strip().startswith(x))
    assert "wrk 15,000 RPS -> 1.333x, 20,600 RPS -> 0.9" in shown and shown.count("RPS ->") == 3, shown


def test_the_rough_ratio_brings_locust_to_wrks_cpu_speed(tmp_path: Path) -> None:
    """What the runner decides on before the run's fit exists: wrk at 0.6 of the speed Locust had reads 0.6^0.8."""
    x = "uvicorn-uvloop-httptools-w1-raw"
    root = make_bundle(
        tmp_path, {(x, "plaintext", 0): [20_000, 20_000]}, referees={(x, "plaintext"): [12_000, None]},
        samples={(x, "plaintext"): [[1000] * 40, [1000] * 40]}, referee_samples={(x, "plaintext"): [600] * 40},
        ceiling=None,
    )  # fmt: skip
    repeats = load_bundle(root).repeats
    assert referee_rule.rough_ratio(repeats) == pytest.approx(20_000 / 12_000 * 0.6**referee_rule.BETA)
    unsampled = [r.model_copy(update={"conditions": None}) for r in repeats]
    assert referee_rule.rough_ratio(unsampled) == pytest.approx(20_000 / 12_000)  # as measured
    assert referee_rule.rough_ratio([r for r in repeats if not r.referee]) is None


@pytest.mark.parametrize(
    ("wrk", "seconds", "spent", "again"),
    [
        (15_000, 2.0, 0.0, True),  # 1.33x wrk: its run is suspect
        (23_000, 2.0, 0.0, True),  # 0.87x
        (20_000, 2.0, 0.0, False),  # in 0.9-1.05: once is enough
        (15_000, 2.0, referee_rule.AGAIN_SECONDS - 2.5, False),  # no allowance left for a 3-s run
        (15_000, 0.0, 0.0, False),  # no referee in this run
    ],
)
def test_the_runner_runs_wrk_again_while_the_ratio_so_far_is_outside_the_range(
    wrk: float, seconds: float, spent: float, again: bool, tmp_path: Path
) -> None:
    x = "uvicorn-uvloop-httptools-w1-raw"
    root = make_bundle(tmp_path, {(x, "plaintext", 0): [20_000]}, referees={(x, "plaintext"): wrk}, ceiling=None)
    rule = referee_rule.RefereeRule(seconds, spent)
    assert rule.again(load_bundle(root).repeats) is again
