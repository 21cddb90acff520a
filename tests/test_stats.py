"""The statistics against synthetic side-by-side rounds with known differences and known noise; the sweep's rates."""

from __future__ import annotations

import math
import random

import pytest

from lab.analysis import stats
from lab.run import sweep


def rounds(rng: random.Random, ratio: float, noise: float, n: int) -> list[float]:
    """Each round's log(b ÷ a): the true log ratio plus normal noise (a start's own speed, the machine's)."""
    return [math.log(ratio) + rng.gauss(0, noise) for _ in range(n)]


def test_a_10_percent_difference_with_3_percent_noise_is_found_in_8_rounds() -> None:
    results = [stats.side_by_side("plaintext", "a", "b", rounds(random.Random(s), 1.10, 0.03, 8)) for s in range(50)]
    found = sum(r.significant and r.faster == "b" for r in results)
    assert found >= 45, found  # the test's power: nearly always
    assert all(r.faster != "a" for r in results)  # never the wrong way
    assert all(r.rounds == 8 and r.df == 7 for r in results)


def test_a_1_percent_difference_with_10_percent_noise_is_indistinguishable() -> None:
    results = [stats.side_by_side("json", "a", "b", rounds(random.Random(s), 1.01, 0.10, 8)) for s in range(50)]
    called = sum(r.significant for r in results)
    assert called <= 5, called  # at most the 5% a 95% interval allows, with some slack for 50 tries
    quiet = next(r for r in results if not r.significant)
    assert quiet.faster is None and quiet.half_pct > 5


def test_the_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    trials = 600
    covered = sum(stats.side_by_side("json", "a", "b", rounds(rng, 0.8, 0.02, 6)).covers(0.8) for _ in range(trials))
    assert 0.92 <= covered / trials <= 0.98, covered / trials


def test_one_round_has_no_interval_and_no_verdict() -> None:
    (one,) = [stats.side_by_side("json", "a", "b", [math.log(2.0)])]
    assert not one.measurable and not one.significant and one.faster is None and one.ratio == pytest.approx(2.0)


def test_a_turned_ratio_is_the_same_measurement_the_other_way_round() -> None:
    p = stats.side_by_side("json", "a", "b", rounds(random.Random(1), 1.25, 0.02, 8))
    q = p.turned()
    assert (q.a, q.b) == ("b", "a") and q.ratio == pytest.approx(1 / p.ratio)
    assert (q.low, q.high) == pytest.approx((1 / p.high, 1 / p.low)) and q.faster == p.faster == "b"


def test_pooled_noise_is_the_repeats_spread_around_each_cells_own_mean() -> None:
    noise = stats.pooled_noise([[100, 100 * math.e], [50, 50 * math.e]])  # log spread 1, two cells, df 2
    assert noise.df == 2 and noise.sd == pytest.approx(math.sqrt(0.5))
    assert stats.pooled_noise([[100]]).df == 0  # a single repeat says nothing about noise


def test_only_cells_that_differ_in_one_thing_are_compared() -> None:
    gr = {"server": "granian", "app": "raw", "loop": "uvloop", "http": "hyper", "workers": 1, "variant": ""}
    assert stats.role(gr, {**gr, "server": "uvicorn", "http": "httptools"}) == "server"
    assert stats.role(gr, {**gr, "app": "starlette"}) == "app"
    assert stats.role(gr, {**gr, "loop": "asyncio"}) == "loop"
    assert stats.role(gr, {**gr, "http": "h2c"}) == "http"
    assert stats.role(gr, {**gr, "variant": "B"}) == "variant"  # a cell against itself in another variant
    assert stats.role(gr, {**gr, "app": "starlette", "loop": "asyncio"}) is None
    assert stats.role(gr, {**gr, "app": "starlette", "variant": "B"}) is None


def test_the_sweep_rates_span_the_slowest_cell_and_add_rates_only_fast_cells_reach() -> None:
    common, fast = sweep.rates({"slow": 2_000, "mid": 9_000, "fast": 40_000})
    assert common == [200, 800, 1_600, 2_400]  # 10% .. 120% of the slowest: its knee is inside
    assert fast == [16_000, 32_000]  # 40% and 80% of the fastest
    assert sweep.serves(40_000, 32_000) and not sweep.serves(9_000, 16_000)
    assert sweep.round2(1234) == 1200 and sweep.round2(0.456) == 0.46


def test_ranks_come_from_the_pairs_measured_side_by_side() -> None:
    """A rank is 1 + the cells significantly faster side by side; a pair told apart by nothing, or never measured
    together, separates nothing."""
    decided = {frozenset(("a", "b")): "a", frozenset(("a", "c")): "a", frozenset(("b", "c")): None}
    assert stats.ranks(["a", "b", "c"], decided) == {"a": 1, "b": 2, "c": 2}
    assert stats.ranks(["a", "b", "c"], {frozenset(("a", "b")): "b"}) == {"a": 2, "b": 1, "c": 1}
    assert stats.ranks(["a", "b"], {}) == {"a": 1, "b": 1}
