"""The one analysis: computed once and frozen, each histogram summarized once (with hdrh's own numbers), ranks from
the pairwise verdicts, one name per stack, comparisons labelled by what changes, warnings ranked."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from lab.analysis import analyze as analysis
from lab.analysis import stats
from lab.analysis.analyze import analyze, stack_label
from lab.bundle import load_bundle
from lab.report import findings, outputs
from loadtests import recorder
from servers.matrix import Cell, load
from tests.synthetic import make_bundle

GRANIAN, UVICORN = "granian-uvloop-hyper-w1-raw", "uvicorn-uvloop-httptools-w1-raw"
UV_ASYNCIO, HYPER = "uvicorn-asyncio-h11-w1-raw", "hypercorn-uvloop-h11-w1-raw"
HYPER_ASYNCIO = "hypercorn-asyncio-h11-w1-raw"


def hdrh_summary(h: HdrHistogram) -> tuple[object, ...]:
    """What latency_summary gave when it called hdrh's per-bucket iterators (before it read the counts in numpy)."""
    return (
        round(h.get_mean_value(), 1), h.get_min_value(), h.get_max_value(),
        {f"p{p:g}": h.get_value_at_percentile(p) for p in recorder.REPORTED},
        [(p, h.get_value_at_percentile(p)) for p in recorder.CURVE] + [(100.0, h.get_max_value())],
    )  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_latency_summary_gives_hdrhs_own_numbers(seed: int) -> None:
    rng = random.Random(seed)
    h = recorder.new_histogram()
    for _ in range(3000):  # microseconds to a minute (clamped at the top), log-spread as latencies are
        h.record_value(min(recorder.HIGHEST_US, max(1, round(math.exp(rng.uniform(0, 18))))), rng.randint(1, 50))
    merged = recorder.new_histogram()
    merged.add(HdrHistogram.decode(h.encode()))
    for hist in (h, merged):
        s = recorder.latency_summary(hist)
        assert (s.mean_us, s.min_us, s.max_us, s.percentiles_us, s.curve_us) == hdrh_summary(hist)
    one = recorder.new_histogram()
    one.record_value(777)
    s = recorder.latency_summary(one)
    assert (s.mean_us, s.min_us, s.max_us, s.percentiles_us, s.curve_us) == hdrh_summary(one)
    assert recorder.latency_summary(recorder.new_histogram()).count == 0


def test_the_p99_interval_is_order_statistics_around_the_binomial_ranks(tmp_path: Path) -> None:
    """10,000 latencies 1..10,000 µs: the 99th percentile is 9,900; 95% of Binomial(10,000, 0.99) lies within about
    ±20 ranks of it, so the interval is about 9,880-9,920 µs (HDR buckets of 8 µs up there)."""
    root = make_bundle(
        tmp_path, {(GRANIAN, "plaintext", 0): [1000] * 3, (GRANIAN, "plaintext", 500): [500]},
        {(GRANIAN, "plaintext", 500): list(range(1, 10_001))},
    )  # fmt: skip
    (point,) = analyze(load_bundle(root), load()).swept_points("plaintext")
    assert point.p99_interval is not None and point.p99_us is not None
    low, high = point.p99_interval
    assert low < point.p99_us < high and 9_860 <= low <= 9_890 and 9_910 <= high <= 9_940, (low, point.p99_us, high)


def test_the_analysis_is_computed_once_and_every_output_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m lab plot`: one analysis, one summary per histogram (each point's latency and send lateness)."""
    root = make_bundle(
        tmp_path, {(GRANIAN, "plaintext", 0): [30_000, 31_000, 29_000], (UVICORN, "plaintext", 0): [20_000] * 3,
                   (GRANIAN, "plaintext", 800): [800], (UVICORN, "plaintext", 800): [800]},
    )  # fmt: skip
    calls = {"analyze": 0, "summary": 0}
    real_analyze, real_summary = analysis.analyze, recorder.latency_summary

    def counting_analyze(*args: object, **kwargs: object) -> analysis.Analysis:
        calls["analyze"] += 1
        return real_analyze(*args, **kwargs)  # type: ignore[arg-type]

    def counting_summary(h: HdrHistogram) -> object:
        calls["summary"] += 1
        return real_summary(h)

    monkeypatch.setattr(analysis, "analyze", counting_analyze)
    monkeypatch.setattr(outputs, "analyze", counting_analyze)  # `python -m lab plot` calls it by this name
    monkeypatch.setattr(recorder, "latency_summary", counting_summary)
    assert outputs.plot(root) == 0
    assert calls == {"analyze": 1, "summary": 4 + 2}  # 4 points' latency, the 2 open ones' lateness
    a = real_analyze(load_bundle(root), load())
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.points[0].median = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.rankings = ()  # type: ignore[misc]


def noisy(level: float, sd: float, n: int = 3) -> list[float]:
    """n repeats at `level` with a sample standard deviation of `sd` in logs (spread evenly about the level)."""
    spread = [math.exp(sd * z) for z in ([-1.0, 0.0, 1.0] if n == 3 else [-1.0, 1.0])]
    return [level * s for s in spread]


@pytest.mark.parametrize(
    ("gap", "sd", "ranks"), [(0.10, 0.03, [1, 2]), (0.01, 0.10, [1, 1])], ids=["10%-at-3%", "1%-at-10%"]
)
def test_stacks_the_lab_cannot_tell_apart_share_a_rank(gap: float, sd: float, ranks: list[int], tmp_path: Path) -> None:
    values = {"a": noisy(1000 * (1 + gap), sd), "b": noisy(1000, sd)}
    noise = stats.pooled_noise(values.values())
    assert noise.sd == pytest.approx(sd, rel=1e-6)
    assert list(stats.ranks(values, noise).values()) == ranks
    # the same through a bundle: three rounds, with a third cell for the degrees of freedom the rounds' fit takes,
    # and the noise in a different order per cell so that no round factor can take it out
    pattern = {GRANIAN: [-1.0, 0.0, 1.0], UVICORN: [1.0, 0.0, -1.0], HYPER: [0.0, 1.0, -1.0]}
    levels = {GRANIAN: 30_000 * (1 + gap), UVICORN: 30_000, HYPER: 6_000}
    root = make_bundle(
        tmp_path, {(k, "json", 0): [levels[k] * math.exp(sd * z) for z in pattern[k]] for k in levels}, ceiling=None
    )
    a = analyze(load_bundle(root), load())
    (ranking,) = a.rankings
    assert [(s.key, s.rank) for s in ranking.stacks] == [(GRANIAN, ranks[0]), (UVICORN, ranks[1]), (HYPER, 3)]
    said = findings.sentence(ranking, a)
    if ranks == [1, 1]:
        assert "indistinguishable at this noise" in said and "depends on the machine" in said, said
    else:
        assert said.startswith("raw ASGI, json: granian · uvloop fastest, 1.10× the next"), said


def test_ranks_share_where_the_pairwise_verdicts_do_not_separate() -> None:
    """a ≈ b and b ≈ c but a > c: a and b rank 1, c ranks 2 (one stack significantly faster); d ranks 4."""
    sd = 0.02
    values = {"a": noisy(1000, sd), "b": noisy(970, sd), "c": noisy(940, sd), "d": noisy(500, sd)}
    noise = stats.pooled_noise(values.values())
    assert stats.ranks(values, noise) == {"a": 1, "b": 1, "c": 2, "d": 4}


def test_without_degrees_of_freedom_there_is_no_interval_rather_than_a_zero_width_one(tmp_path: Path) -> None:
    """The quick preset: 2 cells x 2 rounds with a round factor and the CPU's speed fitted leaves no degree of freedom;
    it once printed "35,751 RPS (95% CI 35,751-35,751)"."""
    speeds = {(GRANIAN, "plaintext"): [[2_000_000] * 40, [1_800_000] * 40], (UVICORN, "plaintext"): [[1_900_000] * 40,
              [2_000_000] * 40]}  # fmt: skip
    root = make_bundle(
        tmp_path, {(GRANIAN, "plaintext", 0): [31_000, 29_000], (UVICORN, "plaintext", 0): [35_000, 36_500]},
        ceiling=None, samples=speeds,
    )  # fmt: skip
    a = analyze(load_bundle(root), load())
    assert not a.measurable and all(f.interval is None for f in a.closed())
    assert all(s.rank is None for r in a.rankings for s in r.stacks)
    text = "\n".join(findings.headline(a))
    assert "no interval (too few repeats)" in text and "±?" in text and "CI 3" not in text
    assert a.caveats[0].stakes == "conclusion" and "too few repeats" in a.caveats[0].text
    (said,) = a.comparisons
    assert not said.measurable and "no interval, too few repeats" in findings.verdict_text(said)


def test_one_name_per_stack_from_the_matrix() -> None:
    matrix = load()

    def label(server: str, loop: str, http: str, workers: int = 1) -> str:
        return stack_label(Cell(server=server, loop=loop, http=http, workers=workers, app="raw"), matrix)

    assert label("uvicorn", "uvloop", "httptools") == "uvicorn · uvloop · httptools"  # uvicorn offers a choice
    assert label("granian", "uvloop", "hyper") == "granian · uvloop"  # no "hyper" to read as hypercorn
    assert label("hypercorn", "asyncio", "h11", 2) == "hypercorn · asyncio ×2"


def test_a_comparison_is_labelled_by_everything_that_changes(tmp_path: Path) -> None:
    root = make_bundle(
        tmp_path, {(UVICORN, "plaintext", 0): noisy(40_000, 0.02), (UV_ASYNCIO, "plaintext", 0): noisy(10_000, 0.02),
                   (HYPER_ASYNCIO, "plaintext", 0): noisy(6_000, 0.02)},
    )  # fmt: skip
    a = analyze(load_bundle(root), load())
    by_cells = {frozenset((s.comparison.a, s.comparison.b)): s for s in a.comparisons}
    loop_and_parser = by_cells[frozenset((UVICORN, UV_ASYNCIO))]
    assert loop_and_parser.changes == ("loop", "http")  # not a loop comparison: the parser changes too
    assert findings.change_title(loop_and_parser.changes).startswith("Event loop and HTTP implementation together")
    assert by_cells[frozenset((UV_ASYNCIO, HYPER_ASYNCIO))].changes == ("server",)  # both on h11
    text = findings.verdict_text(loop_and_parser)
    assert text.startswith("raw ASGI, plaintext: uvicorn · uvloop · httptools 4.00× as fast as uvicorn · asyncio")


def test_a_run_on_shared_cpus_says_shared_not_client(tmp_path: Path) -> None:
    root = make_bundle(
        tmp_path, {(GRANIAN, "plaintext", 0): noisy(30_000, 0.02), (UVICORN, "plaintext", 0): noisy(20_000, 0.02)},
        client_bound={(GRANIAN, "plaintext")}, config_overrides={"server_cpus": [0, 1], "load_cpus": [0, 1],
                                                                 "allow_shared_cpus": True},
    )  # fmt: skip
    a = analyze(load_bundle(root), load())
    figures = {f.key: f for f in a.closed()}
    assert figures[GRANIAN].limit == "client" and figures[GRANIAN].shown_limit == "shared"
    assert figures[UVICORN].shown_limit == "server"
    assert a.caveats[0].stakes == "conclusion" and "took CPU from each other" in a.caveats[0].text
    assert "1 of 2 throughput figures" in a.caveats[0].text


def test_warnings_are_ranked_and_repeated_low_stakes_ones_summed_in_one_line(tmp_path: Path) -> None:
    points = {(GRANIAN, "plaintext", 0): noisy(30_000, 0.02), (UVICORN, "plaintext", 0): noisy(29_500, 0.02),
              (HYPER, "plaintext", 0): noisy(6_000, 0.02)}  # fmt: skip
    unsteady = {(k, s, r, n) for k, s, r in points for n in (1, 2)}
    root = make_bundle(tmp_path, points, client_bound={(UVICORN, "plaintext")}, unsteady=unsteady)
    a = analyze(load_bundle(root), load())
    stakes = [c.stakes for c in a.caveats]
    assert stakes == sorted(stakes, key=["conclusion", "figure", "low"].index)
    # uvicorn is level with granian and client-limited: with more load it could lead, so that can change a conclusion
    assert a.caveats[0].stakes == "conclusion" and "raw ASGI on uvicorn · uvloop · httptools" in a.caveats[0].text
    low = [c for c in a.caveats if "unsteady" in c.text]
    assert len(low) == 1 and low[0].stakes == "low" and low[0].text.startswith("6 unsteady repeat(s) on 3 point(s)")


def test_http1_and_h2c_on_the_same_server_loop_and_app_are_compared_with_an_interval(tmp_path: Path) -> None:
    h2c = "granian-uvloop-h2c-w1-raw"
    root = make_bundle(
        tmp_path, {(GRANIAN, "plaintext", 0): noisy(30_000, 0.02), (h2c, "plaintext", 0): noisy(42_000, 0.02)}
    )
    a = analyze(load_bundle(root), load())
    [said] = [s for s in a.comparisons if {s.comparison.a, s.comparison.b} == {GRANIAN, h2c}]
    assert said.changes == ("http",) and said.comparison.significant
    assert findings.change_title(said.changes).startswith("HTTP implementation alone, HTTP/1.1 vs HTTP/2")
    c = said.comparison
    assert 1.3 < max(c.ratio, 1 / c.ratio) < 1.5 and c.low <= c.ratio <= c.high  # h2 1.4x h1, with its interval
    assert stack_label(Cell.parse(h2c), load()) == "granian · uvloop · h2c"
    assert stack_label(Cell.parse(GRANIAN), load()) == "granian · uvloop"
    [turned] = a.protocols  # the same comparison, turned h2 ÷ HTTP/1.1, for the chart and the report's table
    assert (turned.h1.key, turned.h2.key, turned.stack) == (GRANIAN, h2c, "granian · uvloop")
    assert turned.ratio == pytest.approx(42 / 30) and turned.low < turned.ratio < turned.high
