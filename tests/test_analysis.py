"""The one analysis: computed once and frozen, each histogram summarized once (with hdrh's own numbers), ranks from
the verdicts measured side by side, one name per stack, comparisons labelled by what changes, warnings ranked, every
figure a measured one."""

from __future__ import annotations

import csv
import dataclasses
import math
import random
import re
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from lab.analysis import analyze as analysis
from lab.analysis.analyze import analyze
from lab.analysis.labels import stack_label
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


def side(levels: dict[str, float], sd: float, n: int, seed: int = 1) -> list[dict[str, float]]:
    """n side-by-side rounds of these cells at these levels, each cell's rate with lognormal noise `sd`."""
    rng = random.Random(seed)
    return [{k: v * math.exp(rng.gauss(0, sd)) for k, v in levels.items()} for _ in range(n)]


@pytest.mark.parametrize(
    ("gap", "sd", "ranks"), [(0.10, 0.02, [1, 2]), (0.01, 0.10, [1, 1])], ids=["10%-at-2%", "1%-at-10%"]
)
def test_stacks_the_lab_cannot_tell_apart_share_a_rank(gap: float, sd: float, ranks: list[int], tmp_path: Path) -> None:
    levels = {GRANIAN: 30_000 * (1 + gap), UVICORN: 30_000, HYPER: 6_000}
    root = make_bundle(tmp_path, {(k, "json", 0): noisy(v, 0.05) for k, v in levels.items()}, ceiling=None,
                       together={"json": side(levels, sd, 8)})  # fmt: skip
    a = analyze(load_bundle(root), load())
    (ranking,) = a.rankings
    assert [(s.key, s.rank) for s in ranking.stacks] == [(GRANIAN, ranks[0]), (UVICORN, ranks[1]), (HYPER, 3)]
    said = findings.sentence(ranking, a)
    if ranks == [1, 1]:
        assert "lead, not told apart at this noise" in said, said
    else:
        assert said.startswith("raw ASGI, json: granian · uvloop fastest, 1.1"), said
        assert "as fast as uvicorn · uvloop · httptools" in said and "(side by side)" in said, said


def test_ranks_share_where_the_side_by_side_verdicts_do_not_separate(tmp_path: Path) -> None:
    """a ≈ b and b ≈ c but a > c: a and b rank 1, c ranks 2 (one stack significantly faster)."""
    levels = {GRANIAN: 100_000.0, UVICORN: 99_000.0, HYPER: 97_500.0}
    root = make_bundle(tmp_path, {(k, "json", 0): noisy(v, 0.02) for k, v in levels.items()}, ceiling=None,
                       together={"json": side(levels, 0.008, 8, seed=15)})  # fmt: skip
    (ranking,) = analyze(load_bundle(root), load()).rankings
    assert {s.key: s.rank for s in ranking.stacks} == {GRANIAN: 1, UVICORN: 1, HYPER: 2}


def test_without_side_by_side_rounds_nothing_is_ranked_and_every_figure_is_as_measured(tmp_path: Path) -> None:
    """No side-by-side round (or one): no order is stated; each stack's RPS is the median of what was measured,
    between the lowest and highest repeat, never a fitted figure."""
    root = make_bundle(
        tmp_path, {(GRANIAN, "plaintext", 0): [31_000, 29_000, 36_000], (UVICORN, "plaintext", 0): [35_000, 36_500]},
        ceiling=None, together={},
    )  # fmt: skip
    a = analyze(load_bundle(root), load())
    assert not a.comparisons and all(s.rank is None for r in a.rankings for s in r.stacks)
    figures = {f.key: f for f in a.closed()}
    assert figures[GRANIAN].median == 31_000 and figures[GRANIAN].measured == (29_000, 36_000)
    text = "\n".join(findings.headline(a))
    assert "not measured side by side, so no order is stated" in text and "CI 3" not in text
    assert a.caveats[0].stakes == "conclusion" and "No comparison measured side by side" in a.caveats[0].text
    one = make_bundle(tmp_path / "one", {(GRANIAN, "plaintext", 0): [31_000], (UVICORN, "plaintext", 0): [35_000]},
                      ceiling=None)  # fmt: skip
    (said,) = analyze(load_bundle(one), load()).comparisons
    assert not said.paired.measurable and "no interval, no verdict" in findings.verdict_text(said)


def test_one_name_per_stack_from_the_matrix() -> None:
    matrix = load()

    def label(server: str, loop: str, http: str, workers: int = 1) -> str:
        return stack_label(Cell(server=server, loop=loop, http=http, workers=workers, app="raw"), matrix)

    assert label("uvicorn", "uvloop", "httptools") == "uvicorn · uvloop · httptools"  # uvicorn offers a choice
    assert label("granian", "uvloop", "hyper") == "granian · uvloop"  # no "hyper" to read as hypercorn
    assert label("hypercorn", "asyncio", "h11", 2) == "hypercorn · asyncio ×2"


def test_a_comparison_is_labelled_by_everything_that_changes(tmp_path: Path) -> None:
    levels = {UVICORN: 40_000.0, UV_ASYNCIO: 10_000.0, HYPER_ASYNCIO: 6_000.0}
    root = make_bundle(tmp_path, {(k, "plaintext", 0): noisy(v, 0.02) for k, v in levels.items()},
                       together={"plaintext": side(levels, 0.01, 8)})  # fmt: skip
    a = analyze(load_bundle(root), load())
    by_cells = {frozenset((s.paired.a, s.paired.b)): s for s in a.comparisons}
    loop_and_parser = by_cells[frozenset((UVICORN, UV_ASYNCIO))]
    assert loop_and_parser.changes == ("loop", "http")  # not a loop comparison: the parser changes too
    assert findings.change_title(loop_and_parser.changes).startswith("Event loop and HTTP implementation together")
    assert by_cells[frozenset((UV_ASYNCIO, HYPER_ASYNCIO))].changes == ("server",)  # both on h11
    text = findings.verdict_text(loop_and_parser)
    assert text.startswith("raw ASGI, plaintext: uvicorn · uvloop · httptools 4.0"), text
    assert "as fast as uvicorn · asyncio" in text


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
    shared = [c for c in a.caveats if "took CPU from each other" in c.text]
    assert shared and shared[0].stakes == "conclusion" and "1 of 2 throughput figures" in shared[0].text


def test_warnings_are_ranked_and_repeated_low_stakes_ones_summed_in_one_line(tmp_path: Path) -> None:
    points = {(GRANIAN, "plaintext", 0): noisy(30_000, 0.02), (UVICORN, "plaintext", 0): noisy(29_500, 0.02),
              (HYPER, "plaintext", 0): noisy(6_000, 0.02)}  # fmt: skip
    unsteady = {(k, s, r, n) for k, s, r in points for n in (1, 2)}
    root = make_bundle(tmp_path, points, client_bound={(UVICORN, "plaintext")}, unsteady=unsteady)
    a = analyze(load_bundle(root), load())
    stakes = [c.stakes for c in a.caveats]
    assert stakes == sorted(stakes, key=["conclusion", "figure", "low"].index)
    # uvicorn is client-limited and does not lead: its own figure is a floor, which can change a conclusion
    floor = [c for c in a.caveats if "raw ASGI on uvicorn · uvloop · httptools" in c.text]
    assert floor and floor[0].stakes == "conclusion" and "client-limited" in floor[0].text
    low = [c for c in a.caveats if "unsteady" in c.text]
    assert len(low) == 1 and low[0].stakes == "low" and low[0].text.startswith("6 unsteady repeat(s) on 3 point(s)")


def test_http1_and_h2c_on_the_same_server_loop_and_app_are_compared_side_by_side(tmp_path: Path) -> None:
    h2c = "granian-uvloop-h2c-w1-raw"
    levels = {GRANIAN: 30_000.0, h2c: 42_000.0}
    root = make_bundle(tmp_path, {(k, "plaintext", 0): noisy(v, 0.02) for k, v in levels.items()},
                       together={"plaintext": side(levels, 0.01, 8)})  # fmt: skip
    a = analyze(load_bundle(root), load())
    [said] = [s for s in a.comparisons if {s.paired.a, s.paired.b} == {GRANIAN, h2c}]
    assert said.changes == ("http",) and said.paired.significant
    assert findings.change_title(said.changes).startswith("HTTP implementation alone, HTTP/1.1 vs HTTP/2")
    assert stack_label(Cell.parse(h2c), load()) == "granian · uvloop · h2c"
    [turned] = a.protocols  # the same comparison, turned h2 ÷ HTTP/1.1, for the chart and the report's table
    assert (turned.h1.key, turned.h2.key, turned.stack) == (GRANIAN, h2c, "granian · uvloop")
    p = turned.paired
    assert 1.3 < p.ratio < 1.5 and p.low < p.ratio < p.high  # h2 1.4x h1, with its interval


def test_every_figure_shown_is_one_measured(tmp_path: Path) -> None:
    """The report and summary show each point's median of what was measured, within its lowest and highest repeat
    (a fitted figure once sat outside every repeat measured for it)."""
    points = {(GRANIAN, "json", 0): [4_437, 5_027, 4_486], (UVICORN, "json", 0): [3_900, 4_100, 4_000],
              (HYPER, "json", 0): [1_000, 1_300, 1_200]}  # fmt: skip
    root = make_bundle(tmp_path, points, ceiling=None)
    assert outputs.plot(root) == 0
    rows = {r["key"]: r for r in csv.DictReader((root / "summary.csv").open())}
    for (key, _, _), series in points.items():
        median = float(rows[key]["rps_median"])
        assert min(series) <= median <= max(series) and median == sorted(series)[1]
        assert (float(rows[key]["rps_min"]), float(rows[key]["rps_max"])) == (min(series), max(series))
        assert "rps_at_mean_speed" not in rows[key]
    summary = (root / "summary.md").read_text()
    for figure in re.findall(r"\| (\d[\d,]*) \(([\d.]+k?)–([\d.]+k?)\) \|", summary):
        assert figure, summary
    a = analyze(load_bundle(root), load())
    for ranking in a.rankings:
        for s in ranking.stacks:
            assert s.measured is not None and s.measured.low <= s.median <= s.measured.high
