"""Charts, report and compare: the numbers they show, the files they write, the report as a browser renders it."""

from __future__ import annotations

import os
import shutil
import statistics
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from lab import charts, compare, report, results
from lab.bundle import load_bundle
from servers.matrix import load
from tests.synthetic import make_bundle

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


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def test_chart_data_is_exactly_the_bundles_numbers(synthetic: Path) -> None:
    data = charts.chart_data(load_bundle(synthetic))
    assert data["scenarios"] == ["plaintext"] and data["ceilings"]["plaintext"] == {"rps": 30_000, "how": "measured"}
    bars = {b["key"]: b for bars in data["throughput"]["plaintext"].values() for b in bars}
    assert (bars[RAW]["measured_median"], bars[RAW]["min"], bars[RAW]["max"]) == (21_000, 20_000, 22_000)
    # the bar stands at the run's mean speed (the rounds' factors divided out), where its interval is
    found = results.points(load_bundle(synthetic))
    noise = results.noise(found)["plaintext"]
    raw = next(p for p in results.closed(found) if p.key == RAW)
    assert bars[RAW]["median"] == raw.level(noise) == round(statistics.median(noise.adjusted(RAW, raw.by_round)), 1)
    assert bars[RAW]["ci_low"] < bars[RAW]["median"] < bars[RAW]["ci_high"]
    assert bars[RAW]["limit"] == "client"  # its repeats were judged client-limited on CPU
    assert bars[STAR]["limit"] == "client" and bars[STAR]["referee_rps"] == 25_000  # 15k is 0.6x of wrk's 25k
    assert bars[UV_RAW]["limit"] == "server" and bars[UV_RAW]["referee_rps"] is None
    assert list(data["throughput"]["plaintext"]) == ["raw", "starlette", "fastapi"]
    overhead = {row["stack"]: row for row in data["overhead"]["plaintext"]}
    star = next(p for p in results.closed(found) if p.key == STAR)
    starlette_pct = round(100 * star.level(noise) / raw.level(noise), 1)
    assert overhead["granian uvloop/hyper"]["starlette_pct_of_raw"] == starlette_pct
    levels = {p.key: p.level(noise) for p in results.closed(found)}
    assert overhead["granian uvloop/hyper"]["fastapi_pct_of_raw"] == round(100 * levels[FAST] / levels[RAW], 1)
    uv_star = "uvicorn-asyncio-h11-w1-starlette"
    assert overhead["uvicorn asyncio/h11"]["starlette_pct_of_raw"] == round(100 * levels[uv_star] / levels[UV_RAW], 1)
    curves = {row["key"]: dict(row["curve"]) for row in data["saturation"]["plaintext"]}
    # 90% at 100 µs and 10% at 5 ms; the others 1..1000 µs once each (HDR: 3 significant digits)
    assert curves[RAW][90.0] == 100 and curves[RAW][99.0] == pytest.approx(5000, rel=1e-3)
    sweep = data["sweep"]["plaintext"]
    assert [(q["offered"], q["achieved"], q["shortfall"]) for q in sweep[UV_RAW]["points"]] == [
        (500, 498, False),
        (2000, 1700, True),
    ]
    assert sweep[UV_RAW]["knee"] == 2000 and sweep[RAW]["knee"] is None
    assert sweep[UV_RAW]["points"][1]["p99"] == pytest.approx(30_000, rel=1e-3)
    assert data["compare_at"]["plaintext"] == 500  # the highest rate every swept cell served
    assert {row["key"] for row in data["at_rate"]["plaintext"]} == {RAW, UV_RAW}
    assert data["startup_s"] == {"uvicorn": 0.25, "granian": 0.25}
    assert "Synthetic CPU" in data["caption"] and "20260101T000000Z-abc12345" in data["caption"]


def test_colours_are_stable_per_stack() -> None:
    first, second = charts.palette(charts.load()), charts.palette(charts.load())
    assert first == second and len(set(first.values())) == len(first)


def test_charts_are_written_as_png_and_svg(synthetic: Path) -> None:
    _, files = charts.render(load_bundle(synthetic))
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


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render_dom(page: Path) -> str:
    exe = chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_report_renders_in_a_browser_with_every_image(synthetic: Path) -> None:
    result = load_bundle(synthetic)
    data, files = charts.render(result)
    page, summary = report.write(result, data, files)
    assert "http://" not in page.read_text() and "https://" not in page.read_text()  # nothing fetched: works offline
    dom = render_dom(page)
    pngs = len([f for f in files if f.suffix == ".png"])
    assert f'data-images-loaded="{pngs}"' in dom and f'data-images-total="{pngs}"' in dom
    assert 'data-table-rows="9"' in dom
    assert "client-limited" in dom and RAW in dom
    text = summary.read_text()
    assert text.index("## At equal load") < text.index("## Verdicts") < text.index("## Results")
    assert "at 500 requests/s (plaintext, 2 cells served it): lowest p99 is" in text
    found = results.points(result)
    raw = next(p for p in results.closed(found) if p.key == RAW)
    level = raw.level(results.noise(found)["plaintext"])  # at the run's mean speed, where its interval is
    assert f"| plaintext | granian-uvloop-hyper-w1-raw | {level:,.0f} (" in text and "| client |" in text


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
    result = compare.compare(load_bundle(a), load_bundle(b))
    rows = {r["key"]: r for r in result["rows"] if not r["offered_rps"]}
    assert rows[RAW]["rps_ratio"] == 2.5 and rows[RAW]["rps_ratio_normalized"] == 1.25 and rows[RAW]["p99_ratio"] == 0.5
    assert result["speed_ratio"] == 2.0
    status = {frozenset(c.cells): c.status for c in result["conclusions"]}
    assert status[frozenset((RAW, STAR))] == "became indistinguishable"  # 25% apart in A, 0% in B
    assert status[frozenset((RAW, uv))] == "flipped"  # granian 2x uvicorn in A, uvicorn faster in B
    assert len(status) == 2  # star and uv differ in two things: not a comparison the lab states
    tau, n = result["ranks"]["plaintext"]
    assert n == 3 and tau == pytest.approx(-0.816, abs=1e-3)  # A: raw > star > uv; B: uv > raw = star (tau-b)
    assert f"only in A: {FAST} plaintext" in result["warnings"]
    # each run picks its sweep's rates from its own figures: one line, not one per point; equal rates are compared
    assert "sweep rates differ in plaintext: A 400, 1600; B 420, 1600; cells compared at 1600" in result["warnings"]
    assert not [w for w in result["warnings"] if "@" in w] and (RAW, 1600.0) in {
        (r["key"], r["offered_rps"]) for r in result["rows"]
    }
    assert "version differs: granian 2.8.7 (A) vs 2.9.0 (B)" in result["warnings"]
    assert "Other CPU, 4 CPUs" in result["b"] and "Synthetic CPU, 2 CPUs" in result["a"]
    files = compare.write(result, tmp_path / "out")
    assert {p.name for p in files} >= {"compare.md", "compare.csv", "compare-plaintext.png", "compare-plaintext.svg"}
    text = (tmp_path / "out/compare.md").read_text()
    assert "| plaintext | granian-uvloop-hyper-w1-raw | 10,000 | 25,000 | 2.5 | 1.25 |" in text
    assert "Of 2 comparisons:" in text and "1 flipped" in text and "1 became indistinguishable" in text
    assert "speed B/A (speed index): 2.0" in text


def test_compare_normalizes_by_the_speed_in_the_windows_when_both_runs_sampled_it(tmp_path: Path) -> None:
    """The speedometer's thousands of samples, taken while measuring, beat a speed index of a few samples: B's index
    says 2x, but its CPU ran 1.25x A's during the windows, and its cells 1.25x too."""
    series = {(RAW, "plaintext", 0): [10_000, 10_100, 9_900], (STAR, "plaintext", 0): [8_000, 8_100, 7_900]}

    def run(name: str, factor: float, index: float) -> Path:
        rps = {k: [v * factor for v in vs] for k, vs in series.items()}
        samples = {(k, s): [[round(2_000_000 * factor)] * 40] * 3 for k, s, _ in series}
        return make_bundle(tmp_path / name, rps, run_id=name, speed=(index, index), samples=samples)

    result = compare.compare(load_bundle(run("A", 1.0, 1e6)), load_bundle(run("B", 1.25, 2e6)))
    assert result["speed_ratio"] == 1.25 and result["speed_measure"] == "server CPU speed in the throughput windows"
    assert {r["rps_ratio_normalized"] for r in result["rows"]} == {1.0}
    assert "server CPU speed in its windows 2,500,000 inserts/CPU-s (240 samples)" in result["b"]


def test_a_median_outside_its_interval_still_draws(synthetic: Path, tmp_path: Path) -> None:
    """The interval belongs to the (round-adjusted) mean of the logs, the bar to the median: a skewed cell's median
    can fall outside its interval, and the chart draws both as they are (it once failed on a negative error bar)."""
    bundle = load_bundle(synthetic)
    data, _ = charts.render(bundle)
    bar = next(b for bars in data["throughput"]["plaintext"].values() for b in bars if b["key"] == RAW)
    bar["ci_low"], bar["ci_high"] = bar["median"] * 1.1, bar["median"] * 1.4
    files = charts.draw_throughput(data, "plaintext", load(), tmp_path)
    assert any(p.name == "throughput-plaintext.png" and p.stat().st_size > 5_000 for p in files)


def test_lab_plot_writes_summary_csv_again_with_the_charts_and_report(synthetic: Path) -> None:
    """After the lab's analysis changes, `python -m lab plot` brings every derived file of a bundle up to date."""
    (synthetic / "summary.csv").write_text("stale\n")
    assert charts.main(synthetic) == 0
    assert (synthetic / "summary.csv").read_text().startswith("key,")
    assert (synthetic / "report.html").exists() and (synthetic / "summary.md").exists()
