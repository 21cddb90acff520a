"""The statistics against synthetic repeats with known differences and known noise; the sweep's rates."""

from __future__ import annotations

import math
import random

import pytest

from lab.analysis import stats
from lab.run import sweep

CELLS = {
    "a": {"server": "granian", "app": "raw", "loop": "uvloop", "workers": 1},
    "b": {"server": "uvicorn", "app": "raw", "loop": "uvloop", "workers": 1},
}


def repeats(rng: random.Random, mean: float, noise: float, n: int, drift: tuple[float, ...] = ()) -> dict[int, float]:
    """Round -> RPS: the true mean, times the round's drift factor (none: 1), times lognormal noise."""
    return {r: mean * (drift[r - 1] if drift else 1.0) * math.exp(rng.gauss(0, noise)) for r in range(1, n + 1)}


def run(
    difference: float, noise: float, n: int, seed: int, others: int = 16, drift: tuple[float, ...] = ()
) -> stats.Comparison:
    """A run of two compared cells plus `others` unrelated cells that only add to the pooled noise estimate."""
    rng = random.Random(seed)
    rps = {"a": repeats(rng, 10_000 * (1 + difference), noise, n, drift), "b": repeats(rng, 10_000, noise, n, drift)}
    for i in range(others):
        rps[f"other{i}"] = repeats(rng, 5_000 + 1_000 * i, noise, n, drift)
    found = stats.comparisons("plaintext", CELLS, rps, stats.blocked_noise(rps))
    (comparison,) = found
    return comparison


def test_a_10_percent_difference_with_3_percent_noise_is_found() -> None:
    results = [run(0.10, 0.03, 3, seed) for seed in range(50)]
    found = sum(r.significant and r.faster == "a" for r in results)
    assert found >= 45, found  # the test's power: nearly always
    assert all(r.faster != "b" for r in results)  # never the wrong way
    text = results[0].text()
    assert text.startswith("a faster than b by") and "95% CI" in text


def test_a_1_percent_difference_with_10_percent_noise_is_indistinguishable() -> None:
    results = [run(0.01, 0.10, 3, seed) for seed in range(50)]
    called = sum(r.significant for r in results)
    assert called <= 5, called  # at most the 5% a 95% interval allows, with some slack for 50 tries
    quiet = next(r for r in results if not r.significant)
    assert "indistinguishable at this noise" in quiet.text()


def test_the_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    covered = 0
    trials = 400
    for _ in range(trials):
        rps = {f"c{i}": repeats(rng, 8_000, 0.05, 3, DRIFT) for i in range(12)}
        noise = stats.blocked_noise(rps)
        low, high = stats.interval(noise.adjusted("c0", rps["c0"]), noise)
        covered += low <= 8_000 <= high  # at the run's mean machine speed: DRIFT's geometric mean is 1
    assert 0.91 <= covered / trials <= 0.99


DRIFT = (0.8, 1.0, 1.25)  # a machine 20% slow in the first round and 25% fast in the last


def test_a_drifting_machine_is_fitted_out_so_a_10_percent_difference_with_3_percent_noise_is_found() -> None:
    blocked = [run(0.10, 0.03, 3, seed, drift=DRIFT) for seed in range(50)]
    assert sum(r.significant and r.faster == "a" for r in blocked) >= 45
    rng = random.Random(1)  # the same runs analysed as if every repeat were independent: the drift hides it
    rps = {"a": repeats(rng, 11_000, 0.03, 3, DRIFT), "b": repeats(rng, 10_000, 0.03, 3, DRIFT)}
    rps |= {f"o{i}": repeats(rng, 5_000 + 1_000 * i, 0.03, 3, DRIFT) for i in range(16)}
    unblocked = stats.pooled_noise(rps.values())
    assert not stats.compare(
        "p", "server", "a", "b", list(rps["a"].values()), list(rps["b"].values()), unblocked
    ).significant


def test_round_effects_recover_the_drift_also_when_an_extra_round_has_only_some_cells() -> None:
    cells = {
        f"c{i}": {1: 1000.0 * (i + 1) * 0.8, 2: 1000.0 * (i + 1) * 1.0, 3: 1000.0 * (i + 1) * 1.25} for i in range(4)
    }
    cells["c0"][4] = 1000.0 * 1.1  # an extra round for one undecided cell, the machine 10% fast then
    cells["c1"][4] = 2000.0 * 1.1
    factors = stats.round_effects(cells)
    ratios = [factors[r] / factors[2] for r in (1, 2, 3, 4)]
    assert ratios == pytest.approx([0.8, 1.0, 1.25, 1.1])
    assert math.prod(factors.values()) == pytest.approx(1.0)  # geometric mean 1: the run's mean speed
    noise = stats.blocked_noise(cells)
    assert noise.sd == pytest.approx(0.0, abs=1e-9) and noise.df == (14 - 4) - 3  # sum(n - 1) minus the factors fitted
    assert stats.round_effects({"c0": {1: 1000.0}}) == {}  # one round: nothing to fit


def test_pooled_noise_is_the_repeats_spread_around_each_cells_own_mean() -> None:
    noise = stats.pooled_noise([[100, 100 * math.e], [50, 50 * math.e]])  # log spread 1, two cells, df 2
    assert noise.df == 2 and noise.sd == pytest.approx(math.sqrt(0.5))
    assert stats.pooled_noise([[100]]).df == 0  # a single repeat says nothing about noise


def test_only_cells_that_differ_in_one_thing_are_compared() -> None:
    cells = {
        "gr": {"server": "granian", "app": "raw", "loop": "uvloop", "workers": 1},
        "uv": {"server": "uvicorn", "app": "raw", "loop": "uvloop", "workers": 1},
        "gs": {"server": "granian", "app": "starlette", "loop": "uvloop", "workers": 1},
        "ua": {"server": "uvicorn", "app": "raw", "loop": "asyncio", "workers": 1},
    }
    rps = {k: {1: 1000.0, 2: 1010.0, 3: 990.0} for k in cells}
    found = {(c.a, c.b): c.role for c in stats.comparisons("json", cells, rps, stats.blocked_noise(rps))}
    assert found == {("gr", "uv"): "server", ("gr", "gs"): "app", ("uv", "ua"): "loop"}
    assert stats.undecided(stats.comparisons("json", cells, rps, stats.blocked_noise(rps))) == set(cells)


def test_the_sweep_rates_span_the_slowest_cell_and_add_rates_only_fast_cells_reach() -> None:
    common, fast = sweep.rates({"slow": 2_000, "mid": 9_000, "fast": 40_000})
    assert common == [200, 800, 1_600, 2_400]  # 10% .. 120% of the slowest: its knee is inside
    assert fast == [16_000, 32_000]  # 40% and 80% of the fastest
    assert sweep.serves(40_000, 32_000) and not sweep.serves(9_000, 16_000)
    assert sweep.round2(1234) == 1200 and sweep.round2(0.456) == 0.46


def speedy(rng: random.Random, mean: float, n: int, beta: float = 0.9) -> tuple[dict[int, float], dict[int, float]]:
    """Round -> RPS and round -> CPU speed share, as on the 2-core VMs: each window's mean speed somewhere between 0.6
    and 1 of full speed (about 10% spread), RPS following it to the power beta, plus 2% noise of the server's own."""
    shares = {r: rng.uniform(0.6, 1.0) for r in range(1, n + 1)}
    return {r: mean * s**beta * math.exp(rng.gauss(0, 0.02)) for r, s in shares.items()}, shares


def test_the_speed_term_takes_the_cpus_speed_out_of_the_noise_and_finds_what_it_hid() -> None:
    """A 6% difference under a CPU whose speed moves each window by ~10%: found nearly always with the speedometer's
    shares, rarely without them; beta and the noise recovered."""
    with_speed = without = 0
    for seed in range(40):
        rng = random.Random(seed)
        rps, shares = {}, {}
        for key, mean in [("a", 10_600.0), ("b", 10_000.0), *((f"other{i}", 5_000.0 + 900 * i) for i in range(16))]:
            rps[key], shares[key] = speedy(rng, mean, 3)
        noise = stats.blocked_noise(rps, shares)
        assert noise.beta is not None and abs(noise.beta - 0.9) < 0.15, noise.beta
        assert noise.sd < 0.03 < noise.unspeeded_sd, (noise.sd, noise.unspeeded_sd)
        (found,) = stats.comparisons("plaintext", CELLS, rps, noise)
        with_speed += found.significant and found.faster == "a"
        (plain,) = stats.comparisons("plaintext", CELLS, rps, stats.blocked_noise(rps))
        without += plain.significant and plain.faster == "a"
    assert with_speed >= 36 and without <= 20, (with_speed, without)


def test_the_speed_term_is_left_out_when_a_repeat_lacks_a_share_or_speed_does_not_show_in_rps() -> None:
    rng = random.Random(3)
    rps, shares = {}, {}
    for i in range(8):
        rps[f"c{i}"], shares[f"c{i}"] = speedy(rng, 5_000.0 + 500 * i, 3)
    assert stats.blocked_noise(rps, shares).beta is not None
    partial = {**shares, "c0": {1: shares["c0"][1]}}  # one cell without the samples of two repeats
    assert stats.blocked_noise(rps, partial).beta is None
    upside_down = {k: {r: 1.6 - s for r, s in by_round.items()} for k, by_round in shares.items()}
    assert stats.blocked_noise(rps, upside_down).beta is None  # RPS falling as the CPU runs faster: not fitted
    plain = stats.blocked_noise(rps)
    assert plain.beta is None and plain.unspeeded_sd == plain.sd


def test_the_interval_with_the_speed_term_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = random.Random(11)
    covered, trials = 0, 300
    for _ in range(trials):
        rps, shares = {}, {}
        for i in range(12):
            rps[f"c{i}"], shares[f"c{i}"] = speedy(rng, 8_000.0, 3)
        noise = stats.blocked_noise(rps, shares)
        low, high = stats.interval(noise.adjusted("c0", rps["c0"]), noise)
        # the truth at the run's mean speed: 8,000 x exp(beta x mean log share), beta = 0.9
        truth = 8_000.0 * math.exp(0.9 * noise.centre)
        covered += low <= truth <= high
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_a_pair_decided_by_a_better_measurement_is_ranked_by_it() -> None:
    """An A/B run ranks a cell's two variants by their side-by-side verdict, not by sequential rounds: here the rounds
    put A 50% ahead at 2% noise, while the pair rounds found them level, or B faster."""
    values = {"a": [15_000.0, 15_300.0, 14_700.0], "b": [10_000.0, 10_200.0, 9_800.0], "c": [5_000.0, 5_100.0, 4_900.0]}
    noise = stats.pooled_noise(values.values())
    assert stats.ranks(values, noise) == {"a": 1, "b": 2, "c": 3}
    assert stats.ranks(values, noise, {frozenset(("a", "b")): None}) == {"a": 1, "b": 1, "c": 3}
    assert stats.ranks(values, noise, {frozenset(("a", "b")): "b"}) == {"a": 2, "b": 1, "c": 3}
