"""Charts, report and compare: the numbers they show, the files they write, the report as a browser renders it."""

from __future__ import annotations

import math
import statistics
import struct
from pathlib import Path

import pytest

from lab.analysis.analyze import Analysis, analyze
from lab.bundle import load_bundle
from lab.report import charts, compare, findings, outputs, pages
from servers.matrix import load
from tests.browser import body_data, first_screen, render_dom
from tests.synthetic import add_stop, make_bundle

RAW, STAR, FAST = "granian-uvloop-hyper-w1-raw", "granian-uvloop-hyper-w1-starlette", "granian-uvloop-hyper-w1-fastapi"
UV_RAW, UV_STAR = "uvicorn-asyncio-h11-w1-raw", "uvicorn-asyncio-h11-w1-starlette"
POINTS = {
    (RAW, "plaintext", 0): [20_000, 22_000, 21_000],
    (STAR, "plaintext", 0): [15_000, 15_000, 16_000],
    (FAST, "plaintext", 0): [5_000, 6_000, 5_500],
    (UV_RAW, "plaintext", 0): [5_000, 5_000, 5_000],
    (UV_STAR, "plaintext", 0): [4_000, 4_000, 4_100],
    (RAW, "plaintext", 500): [499],
    (RAW, "plaintext", 2000): [1990],
    (UV_RAW, "plaintext", 500): [498],
    (UV_RAW, "plaintext", 2000): [1700],
}


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    latency = {(RAW, "plaintext", 0): [100] * 900 + [5000] * 100, (UV_RAW, "plaintext", 2000): [30_000] * 10}
    return make_bundle(
        tmp_path, POINTS, latency, client_bound={(RAW, "plaintext")}, referees={(STAR, "plaintext"): 25_000},
        shortfall={(UV_RAW, "plaintext", 2000)},
    )  # fmt: skip


def analysis_of(root: Path) -> Analysis:
    return analyze(load_bundle(root), load())


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def test_the_analysis_is_exactly_the_bundles_numbers(synthetic: Path) -> None:
    a = analysis_of(synthetic)
    assert a.scenarios == ("plaintext",) and a.calibration and a.calibration.point("plaintext")
    ceiling = a.calibration.point("plaintext")
    assert ceiling and (ceiling.ceiling_rps, ceiling.ceiling) == (30_000, "measured")
    bars = {f.key: f for f in a.closed("plaintext")}
    assert (bars[RAW].median, min(bars[RAW].rps), max(bars[RAW].rps)) == (21_000, 20_000, 22_000)
    # every figure as measured: the median of the repeats, and their range
    assert bars[RAW].measured == (20_000, 22_000)
    assert bars[RAW].limit == "client"  # its repeats were judged client-limited on CPU
    # 15k is 0.6x of wrk's 25k, but the client's busiest CPU was half busy and at half its ceiling: not its limit
    assert bars[STAR].limit == "unclear" and bars[STAR].referee_rps == 25_000
    assert bars[UV_RAW].limit == "server" and bars[UV_RAW].referee_rps is None
    assert a.apps == ("raw", "starlette", "fastapi")
    overhead = {o.stack: o for o in a.overhead}

    def side(x: str, y: str) -> float:  # y ÷ x, each round's ratio of the synthetic windows (the repeats)
        logs = [math.log(b / a) for a, b in zip(POINTS[(x, "plaintext", 0)], POINTS[(y, "plaintext", 0)], strict=True)]
        return math.exp(statistics.fmean(logs))

    assert overhead["granian · uvloop"].pct["starlette"].ratio == pytest.approx(side(RAW, STAR))
    assert overhead["granian · uvloop"].pct["fastapi"].ratio == pytest.approx(side(RAW, FAST))
    assert overhead["uvicorn · asyncio · h11"].pct["starlette"].ratio == pytest.approx(side(UV_RAW, UV_STAR))
    curves = {f.key: dict(f.latency.curve_us) for f in a.closed() if f.latency}
    # 90% at 100 µs and 10% at 5 ms; the others 1..1000 µs once each (HDR: 3 significant digits)
    assert curves[RAW][90.0] == 100 and curves[RAW][99.0] == pytest.approx(5000, rel=1e-3)
    sweep = [f for f in a.swept_points("plaintext") if f.key == UV_RAW]
    assert [(f.offered, f.median, f.rate_shortfall) for f in sweep] == [(500, 498, False), (2000, 1700, True)]
    assert sweep[1].p99_us == pytest.approx(30_000, rel=1e-3)
    assert a.common_rate["plaintext"] == 500  # the highest rate every swept cell served
    assert {f.key for f in a.swept_points("plaintext") if f.offered == 500} == {RAW, UV_RAW}
    assert {f.cell.server: f.startup_s for f in a.points} == {"uvicorn": 0.25, "granian": 0.25}
    assert "Synthetic CPU" in charts.caption(a) and "20260101T000000Z-abc12345" in charts.caption(a)
    assert "1 Locust worker)" in charts.caption(a)  # not "1 Locust workers"


def test_colours_are_stable_per_stack() -> None:
    first, second = charts.palette(load()), charts.palette(load())
    assert first == second and len(set(first.values())) == len(first)


def test_charts_are_written_as_png_and_svg(synthetic: Path) -> None:
    files = [f for c in charts.render(analysis_of(synthetic)) for f in c.files]
    names = sorted(p.name for p in files)
    for expected in ("throughput-plaintext", "overhead-plaintext", "latency-saturation-plaintext",
                     "latency-vs-rate-plaintext", "latency-at-rate-plaintext", "cost-vs-rate-plaintext",
                     "resources"):  # fmt: skip
        assert f"{expected}.png" in names and f"{expected}.svg" in names
    for path in files:
        assert path.stat().st_size > 5_000, path
        if path.suffix == ".png":
            width, height = png_size(path)
            assert 800 <= width <= 1800 and 400 <= height <= 900, (path, width, height)
        else:
            assert path.read_text().lstrip().startswith("<?xml")


def test_the_report_renders_in_a_browser_with_every_image(synthetic: Path) -> None:
    a = analysis_of(synthetic)
    drawn = charts.render(a)
    page, summary = pages.write(a, drawn)
    html = page.read_text()
    assert "http://" not in html and "https://" not in html  # nothing fetched: works offline
    dom = render_dom(page)
    data = body_data(dom)
    pngs = len([f for c in drawn for f in c.files if f.suffix == ".png"])
    assert data["images-loaded"] == data["images-total"] == str(pngs)
    assert data["table-rows"] == "9"
    assert "client-limited" in dom and "raw ASGI on granian · uvloop" in dom and RAW in dom
    # every caption names files that exist
    for chart in drawn:
        assert f"charts/{chart.name}.png, charts/{chart.name}.svg" in html
    text = summary.read_text()
    assert text.index("## Bottom line") < text.index("## Warnings") < text.index("## Every comparison")
    assert "at 500 requests/s (plaintext, 2 of 2 cells served it)" in text
    raw = next(f for f in a.closed() if f.key == RAW)
    assert f"| plaintext | raw ASGI on granian · uvloop | {raw.median:,.0f} (20,000–22,000) |" in text
    assert "| client |" in text
    assert "- granian 2.8.7" in text  # the versions the result depends on


def test_the_bottom_line_comes_first_in_the_report_the_summary_and_the_headline(synthetic: Path) -> None:
    a = analysis_of(synthetic)
    page, summary = pages.write(a, [])
    box, viewport, columns = first_screen(render_dom(page, 1400, 900))
    assert set(columns) == {f"{r.scenario}/{r.app}" for r in a.rankings} == {
        "plaintext/raw", "plaintext/starlette", "plaintext/fastapi"
    }  # fmt: skip
    left, top, right, bottom = box
    assert left >= 0 and right <= 1400 and 0 < top < bottom <= min(900, viewport[1]), (box, viewport)
    head = summary.read_text().splitlines()[:30]
    assert any(line.startswith("| granian · uvloop |") for line in head)
    assert (
        sum(line.startswith("- raw ASGI, plaintext:") or line.startswith("- FastAPI, plaintext:") for line in head) == 2
    )
    lines = findings.headline(a)
    assert lines[0].startswith("bottom line") and any("granian · uvloop" in line and "#1" in line for line in lines)
    # the last three: tests/test_compose.py reads the fastest cell right above the line naming the results
    assert (
        lines[-3].startswith("fastest alone — plaintext: raw ASGI on granian · uvloop ")
        and "client-limited" in lines[-3]
    )
    assert lines[-2].startswith("equal load — at 500 requests/s") and lines[-1].startswith("4 of 4 comparisons differ")
    assert any(line.startswith("Starlette, plaintext: ") for line in lines)


def test_compare_says_what_held_what_flipped_and_what_became_noise(tmp_path: Path) -> None:
    uv = "uvicorn-uvloop-httptools-w1-raw"
    a = make_bundle(
        tmp_path / "a",
        {(RAW, "plaintext", 0): [10_000, 10_100, 9_900], (STAR, "plaintext", 0): [8_000, 8_100, 7_900],
         (uv, "plaintext", 0): [5_000, 5_050, 4_950], (FAST, "plaintext", 0): [3_000, 3_000, 3_000],
         (RAW, "plaintext", 400): [400], (RAW, "plaintext", 1600): [1600]},
        {(RAW, "plaintext", 0): [1000] * 100}, run_id="A", speed=(1_000_000.0, 1_000_000.0),
    )  # fmt: skip
    b = make_bundle(
        tmp_path / "b",
        {(RAW, "plaintext", 0): [25_000, 25_250, 24_750], (STAR, "plaintext", 0): [25_100, 24_900, 25_000],
         (uv, "plaintext", 0): [30_000, 30_300, 29_700], (RAW, "plaintext", 420): [420],
         (RAW, "plaintext", 1600): [1600]},
        {(RAW, "plaintext", 0): [500] * 100}, run_id="B", speed=(2_000_000.0, 2_000_000.0),
        versions={"uvicorn": "0.54.0", "granian": "2.9.0", "locust": "2.47.0"},
        machine_overrides={"cpu_model": "Other CPU", "logical_cpus": 4},
    )  # fmt: skip
    for n in (1, 2):  # granian's stops lose nothing due before SIGTERM in A, and do in B's second; uvicorn: A only
        add_stop(a, RAW, n)
        add_stop(b, RAW, n, lost_before=2 * (n - 1), lost_after=7)
    add_stop(a, uv, 1)
    result = compare.compare(analysis_of(a), analysis_of(b))
    rows = {r.key: r for r in result.rows if not r.offered_rps}
    assert rows[RAW].rps_ratio == 2.5 and rows[RAW].rps_ratio_normalized == 1.25 and rows[RAW].p99_ratio == 0.5
    assert result.speed_ratio == 2.0
    status = {frozenset(c.cells): c.status for c in result.conclusions}
    assert status[frozenset((RAW, STAR))] == "became indistinguishable"  # 25% apart in A, 0% in B
    assert status[frozenset((RAW, uv))] == "flipped"  # granian 2x uvicorn in A, uvicorn faster in B
    assert len(status) == 2  # star and uv differ in two things: not a comparison the lab states
    tau, n = result.ranks["plaintext"]
    assert n == 3 and tau == pytest.approx(-0.816, abs=1e-3)  # A: raw > star > uv; B: uv > raw = star (tau-b)
    # the raw app's order of its stacks swapped between the runs: said in words
    (order,) = [o for o in result.orders if o.app == "raw"]
    assert order.flipped and "the order depends on the machine" in order.sentence()
    assert "uvicorn · uvloop · httptools ÷ granian · uvloop: A 0.50×, B 1.20×" in order.sentence()
    assert f"only in A: {FAST} plaintext" in result.warnings
    # each run picks its sweep's rates from its own figures: one line, not one per point; equal rates are compared
    assert "sweep rates differ in plaintext: A 400, 1600; B 420, 1600; cells compared at 1600" in result.warnings
    assert not [w for w in result.warnings if "@" in w] and (RAW, 1600.0) in {
        (r.key, r.offered_rps) for r in result.rows
    }
    assert "version differs: granian 2.8.7 (A) vs 2.9.0 (B)" in result.warnings
    assert "Other CPU, 4 CPUs" in result.b and "Synthetic CPU, 2 CPUs" in result.a
    files = compare.write(result, tmp_path / "out")
    assert {p.name for p in files} >= {"compare.md", "compare.csv", "compare-plaintext.png", "compare-plaintext.svg"}
    text = (tmp_path / "out/compare.md").read_text()
    assert "| plaintext | raw ASGI on granian · uvloop | 10,000 | 25,000 | 2.5 | 1.25 |" in text
    assert "Of 2 comparisons:" in text and "1 flipped" in text and "1 became indistinguishable" in text
    assert "speed B/A (speed index): 2.0" in text
    assert text.index("## The bottom line in both runs") < text.index("## Do the two runs agree?")
    assert text.index("## Do the two runs agree?") < text.index("## Conclusions")
    # do the two runs agree: each ratio measured side by side in both, the conclusions, each run's median interval,
    # the stops per server
    agreed = result.agreement
    assert agreed.conclusions == (0, 1, 2) and agreed.limits[1] == 3 and len(agreed.moved) == 3 - agreed.limits[0]
    assert all(w is not None and 0 < w < 20 for w in agreed.half_width)
    assert len(agreed.ratios) == 2 and not any(r.agree or r.inside for r in agreed.ratios)
    flip = next(r for r in agreed.ratios if "uvicorn" in r.cells[0])  # granian ÷ uvicorn, as the matrix lists them
    assert flip.a.ratio == pytest.approx(2.0) and flip.b.ratio == pytest.approx(25 / 30) and flip.apart_pct < -50
    said = "- Ratios measured side by side in both runs: 2; B's within the combined 95% interval of the two on 0 "
    assert said in text
    assert "- Conclusions: 0 of 2 stated in both significant and the same way in both, 1 flipped." in text
    assert (
        "- Stopping under load, granian: a different outcome: a request due before SIGTERM lost A never, "
        "B in 1 of 2 stops; lost per stop A 5-5, B 7-9." in text
    )
    assert "- Stopping under load, uvicorn: stopped in A only." in text
    same = compare.agreement(analysis_of(a), analysis_of(a), list(result.rows), list(result.conclusions))
    assert same.stops[0][0] == "granian" and (
        "the same outcome (2 and 2 stops): exit 0 in every stop; lifespan shutdown completed in every stop; "
        "a request due before SIGTERM lost never; killed never; something left behind never; lost per stop A 5-5, "
        "B 5-5." in same.lines()[4]
    )


def test_compare_normalizes_by_the_speed_in_the_windows_when_both_runs_sampled_it(tmp_path: Path) -> None:
    """The speedometer's thousands of samples, taken while measuring, beat a speed index of a few samples: B's index
    says 2x, but its CPU ran 1.25x A's during the windows, and its cells 1.25x too."""
    series = {(RAW, "plaintext", 0): [10_000, 10_100, 9_900], (STAR, "plaintext", 0): [8_000, 8_100, 7_900]}

    def run(name: str, factor: float, index: float) -> Path:
        rps = {k: [v * factor for v in vs] for k, vs in series.items()}
        samples = {(k, s): [[round(2_000_000 * factor)] * 40] * 3 for k, s, _ in series}
        return make_bundle(tmp_path / name, rps, run_id=name, speed=(index, index), samples=samples)

    result = compare.compare(analysis_of(run("A", 1.0, 1e6)), analysis_of(run("B", 1.25, 2e6)))
    assert result.speed_ratio == 1.25 and result.speed_measure == "server CPU speed in the throughput windows"
    assert {r.rps_ratio_normalized for r in result.rows} == {1.0}
    assert "server CPU speed in its windows 2,500,000 inserts/CPU-s (240 samples)" in result.b


def test_a_comparison_the_client_paced_is_flagged_and_ranks_nothing(tmp_path: Path) -> None:
    """A side-by-side window whose server CPUs were not saturated (measured again, and still so) reads the client's
    order of service: its pair is flagged, and its verdict separates nothing in the ranking."""
    from lab import bundle as records

    uv = "uvicorn-uvloop-httptools-w1-raw"
    points = {(RAW, "plaintext", 0): [20_000, 22_000, 21_000], (uv, "plaintext", 0): [5_000, 5_100, 4_900]}
    root = make_bundle(tmp_path, points, ceiling=None)
    for path in sorted((root / "groups").glob("*.json")):
        window = records.read_model(path, "group")
        idle = [s.model_copy(update={"cpus_busy": {"0": 0.6}}) for s in window.servers]
        records.write_record(path, window.model_copy(update={"servers": idle}))
    a = analysis_of(root)
    (said,) = a.comparisons
    assert said.paired.significant and said.flagged and said.verdict is None
    assert "window(s) the client paced: not ranked on" in findings.verdict_text(said)
    (ranking,) = a.rankings
    assert [s.rank for s in ranking.stacks] == [1, 1]  # 4x apart, and not told apart: the client set the pace
    assert any("not saturated even when measured again" in c.text for c in a.caveats)


def test_lab_plot_writes_summary_csv_again_with_the_charts_and_report(synthetic: Path) -> None:
    """After the lab's analysis changes, `python -m lab plot` brings every derived file of a bundle up to date."""
    (synthetic / "summary.csv").write_text("stale\n")
    assert outputs.plot(synthetic) == 0
    assert (synthetic / "summary.csv").read_text().startswith("key,")
    assert (synthetic / "report.html").exists() and (synthetic / "summary.md").exists()


def test_http2_against_http1_is_charted_per_server_from_the_analysis(tmp_path: Path) -> None:
    h1, h2 = "granian-uvloop-hyper-w1-raw", "granian-uvloop-h2c-w1-raw"
    uv1, uv2 = "uvicorn-uvloop-httptools-w1-raw", "uvicorn-uvloop-h2c-w1-raw"
    levels = {h1: 30_000, h2: 42_000, uv1: 20_000, uv2: 16_000}
    spreads = ([0.98, 1.0, 1.02], [1.02, 0.98, 1.0])  # rounds' noise that a round's drift does not explain
    points = {(k, "plaintext", 0): [v * s for s in spreads[i % 2]] for i, (k, v) in enumerate(levels.items())}
    root = make_bundle(tmp_path, points)
    a = analysis_of(root)
    found = {(p.h1.key, p.h2.key): p for p in a.protocols}
    assert set(found) == {(h1, h2), (uv1, uv2)}  # h2 ÷ its own server's HTTP/1.1 twin, never across servers
    h2_on_granian, h2_on_uvicorn = found[(h1, h2)].paired, found[(uv1, uv2)].paired
    assert h2_on_granian.ratio == pytest.approx(1.4, rel=0.01) and h2_on_granian.low < 1.4 < h2_on_granian.high
    assert h2_on_uvicorn.ratio == pytest.approx(0.8, rel=0.01) and h2_on_uvicorn.significant
    [chart] = [c for c in charts.render(a) if c.name == "http2-plaintext"]
    assert sorted(p.suffix for p in chart.files) == [".png", ".svg"]
    svg = chart.files[1].read_text()
    assert "1.40× (95% CI" in svg and "0.80× (95% CI" in svg and "raw ASGI · granian · uvloop" in svg
    assert 800 <= png_size(chart.files[0])[0] <= 1800
    # the report's table reads the same analysis result as the chart
    rows = findings.protocols_rows(a)
    assert any(
        r[:3] == ("plaintext", "raw ASGI", "granian · uvloop") and r[3].startswith("1.40× (95% CI") for r in rows
    )
    pages.write(a, [chart])
    summary = (root / "summary.md").read_text()
    assert (
        "| plaintext | raw ASGI | granian · uvloop | 1.40× (95% CI" in summary
        and 'id="http2-table"' in (root / "report.html").read_text()
    )
