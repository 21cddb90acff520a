"""What makes a repeat disturbed, from recorded figures: a slow server CPU around the window, an unsteady window
(quarter-seconds in the closed model, seconds in the open one), and how the recorder buckets its answers."""

from __future__ import annotations

import time

import pytest

from lab.measure.conditions import conditions
from lab.run.budget import RERUNS_PER_RUN, Budget
from loadtests.load import LoadResult
from loadtests.recorder import QUARTERS, Recorder, whole_seconds
from tests.test_verdict import result, server


def closed(quarters: list[int]) -> LoadResult:
    return result().model_copy(update={"per_quarter": quarters})


def test_a_steady_window_at_full_speed_is_quiet() -> None:
    found = conditions(closed([5000, 5100, 4950, 5050] * 5), server(0.99), (0,), (0.97, 1.0))
    assert not found.unsteady and not found.disturbed and found.note == "quiet"
    assert (found.speed_before, found.speed_after) == (0.97, 1.0)


def test_one_slow_quarter_second_makes_the_window_unsteady() -> None:
    quarters = [5000] * 9 + [3000] + [5000] * 10
    found = conditions(closed(quarters), server(0.99), (0,), (1.0, 1.0))
    assert found.unsteady and not found.disturbed  # flagged, not measured again: the dip may be the server's
    assert "a quarter-second at 60% of the median" in found.note


@pytest.mark.parametrize(("speed", "slow"), [((0.55, 0.98), True), ((1.0, 0.6), True), ((0.8, 0.9), False)])
def test_a_slow_server_cpu_before_or_after_the_window_is_noted_not_measured_again(
    speed: tuple[float, float], slow: bool
) -> None:
    """The CPU switches speed several times a second: a probe says little about the window between; the speedometer's
    samples during it are kept instead, and the analysis fits them out."""
    found = conditions(closed([5000] * 20), server(0.99), (0,), speed, [3_000_000, 1_800_000])
    assert not found.disturbed and ("slow: the server CPU at" in found.note) is slow, found
    assert found.speed_samples == [3_000_000, 1_800_000]


def test_the_open_model_is_judged_per_second_not_per_quarter() -> None:
    """A Poisson schedule's quarter-seconds vary on their own at low rates; whole seconds are what it promises."""
    poisson = result(offered=400, shortfall=False).model_copy(update={"per_quarter": [100, 60, 110, 130] * 5})
    assert not conditions(poisson, server(0.2), (0,), (1.0, 1.0)).unsteady
    assert conditions(closed([100, 60, 110, 130] * 5), server(0.99), (0,), (1.0, 1.0)).unsteady


def test_without_probes_only_the_other_rules_decide() -> None:
    found = conditions(closed([5000] * 20), server(0.99), (0,))
    assert not found.disturbed and found.speed_before is None


def test_the_recorder_counts_quarter_seconds_and_sums_them_into_whole_seconds() -> None:
    recorder = Recorder()
    recorder.open()
    recorder.close()
    recorder.started, recorder.ended = 100.0, 102.6  # 2.6 s: ten whole quarters, two whole seconds
    for quarter in range(11):
        recorder.per_quarter[quarter] = 10 + quarter
    found = recorder.snapshot()
    assert found.per_quarter == [10 + q for q in range(10)]
    assert whole_seconds(found.per_quarter) == [sum(range(10, 14)), sum(range(14, 18))]
    assert QUARTERS == 4


def budget_with(seconds: float, started_ago: float) -> Budget:
    """A run with 1-s warm-ups and 3-s windows, every first referee run and no sweep still to come."""
    return Budget(seconds, time.time() - started_ago, repeat_seconds=1.0 + 3.0, sweep_seconds=0.0, referee_seconds=2.0)


def test_a_disturbed_repeat_is_measured_again_only_while_the_run_still_fits_its_budget() -> None:
    """Each repeat left costs warm-up + window + overhead + its share of the visit: 1 + 3 + 1 + 0.5 s here."""
    rest = budget_with(600, 0).rest(repeats=10, referees=0, sweep=0.0)
    assert rest == 55.0
    assert budget_with(600, started_ago=100).may_rerun(5.0, rest)  # 100 + 5 + 55 s of 600
    assert not budget_with(600, started_ago=560).may_rerun(5.0, rest)  # 560 + 5 + 55 s > 600
    unbounded = budget_with(0, started_ago=10_000)
    unbounded.reruns = RERUNS_PER_RUN - 1
    assert unbounded.may_rerun(5.0, rest)
    unbounded.reruns = RERUNS_PER_RUN
    assert not unbounded.may_rerun(5.0, rest)
