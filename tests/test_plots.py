"""Charts, report and compare: the numbers they show, the files they write, the report as a browser renders it."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from lab import charts, compare, report
from lab.bundle import load_bundle
from tests.synthetic import make_bundle

RAW, STAR, FAST = "granian-uvloop-hyper-w1-raw", "granian-uvloop-hyper-w1-starlette", "granian-uvloop-hyper-w1-fastapi"
UV_RAW, UV_STAR = "uvicorn-asyncio-h11-w1-raw", "uvicorn-asyncio-h11-w1-starlette"
POINTS = {
    (RAW, "plaintext", 0): [20_000, 22_000, 21_000],
    (STAR, "plaintext", 0): [15_000, 15_000, 16_000],
    (FAST, "plaintext", 0): [5_000, 6_000, 5_500],
    (UV_RAW, "plaintext", 0): [5_000, 5_000, 5_000],
    (UV_STAR, "plaintext", 0): [4_000, 4_000, 4_000],
    (RAW, "io", 500): [499, 498],
    (RAW, "io", 2000): [1900, 1880],
}


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    latency = {(RAW, "plaintext", 0): [100] * 900 + [5000] * 100}
    return make_bundle(tmp_path, POINTS, latency, client_bound={(RAW, "plaintext")})


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def test_chart_data_is_exactly_the_bundles_numbers(synthetic: Path) -> None:
    data = charts.chart_data(load_bundle(synthetic))
    assert data["scenarios"] == ["plaintext"] and data["ceiling_rps"] == 30_000
    bars = {b["key"]: b for bars in data["throughput"]["plaintext"].values() for b in bars}
    assert (bars[RAW]["median"], bars[RAW]["min"], bars[RAW]["max"]) == (21_000, 20_000, 22_000)
    assert bars[RAW]["client_bound"] and not bars[STAR]["client_bound"]
    assert list(data["throughput"]["plaintext"]) == ["raw", "starlette", "fastapi"]
    overhead = {row["stack"]: row for row in data["overhead"]["plaintext"]}
    assert overhead["granian uvloop/hyper"]["starlette_pct_of_raw"] == round(100 * 15_000 / 21_000, 1)
    assert overhead["granian uvloop/hyper"]["fastapi_pct_of_raw"] == round(100 * 5_500 / 21_000, 1)
    assert overhead["uvicorn asyncio/h11"]["starlette_pct_of_raw"] == 80.0
    latency = {row["key"]: row for row in data["latency_bars"]["plaintext"]}
    # 90% at 100 µs and 10% at 5 ms; the others 1..1000 µs once each (HDR: 3 significant digits)
    assert latency[RAW]["p50_us"] == 100 and latency[RAW]["p99_us"] == pytest.approx(5000, rel=1e-3)
    assert latency[STAR]["p50_us"] == 500 and latency[STAR]["p99_us"] == 990
    load_points = data["load_curves"]["io"][RAW]["points"]
    assert [(p["offered"], p["achieved"], p["shortfall"]) for p in load_points] == [
        (500, 498.5, False),
        (2000, 1890.0, True),
    ]
    assert data["startup_s"] == {"uvicorn": 0.25, "granian": 0.25}
    assert "Synthetic CPU" in data["caption"] and "20260101T000000Z-abc12345" in data["caption"]


def test_colours_are_stable_per_stack() -> None:
    first, second = charts.palette(charts.load()), charts.palette(charts.load())
    assert first == second and len(set(first.values())) == len(first)


def test_charts_are_written_as_png_and_svg(synthetic: Path) -> None:
    _, files = charts.render(load_bundle(synthetic))
    names = sorted(p.name for p in files)
    for expected in ("throughput-plaintext", "overhead-plaintext", "latency-plaintext", "latency-bars-plaintext",
                     "latency-vs-load-io", "resources"):  # fmt: skip
        assert f"{expected}.png" in names and f"{expected}.svg" in names
    for path in files:
        assert path.stat().st_size > 5_000, path
        if path.suffix == ".png":
            width, height = png_size(path)
            assert 800 <= width <= 1800 and 400 <= height <= 800, (path, width, height)
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
    assert 'data-table-rows="7"' in dom
    assert "client-bound" in dom and RAW in dom
    assert "| plaintext | granian-uvloop-hyper-w1-raw | 21,000 (20,000–22,000)" in summary.read_text()


def test_compare_gives_the_known_ratios(tmp_path: Path) -> None:
    a = make_bundle(tmp_path / "a", {(RAW, "plaintext", 0): [10_000, 10_000], (STAR, "plaintext", 0): [8_000]},
                    {(RAW, "plaintext", 0): [1000] * 100}, run_id="A", server_cores=1.0)  # fmt: skip
    b = make_bundle(
        tmp_path / "b", {(RAW, "plaintext", 0): [25_000, 25_000], (FAST, "plaintext", 0): [3_000]},
        {(RAW, "plaintext", 0): [500] * 100}, run_id="B", server_cores=2.0,
        versions={"uvicorn": "0.54.0", "granian": "2.9.0", "locust": "2.47.0"},
        machine_overrides={"cpu_model": "Other CPU", "logical_cpus": 4},
    )  # fmt: skip
    result = compare.compare(load_bundle(a), load_bundle(b))
    (row,) = result["rows"]
    assert row["key"] == RAW and row["rps_ratio"] == 2.5 and row["p99_ratio"] == 0.5
    assert row["rps_per_core_a"] == 10_000 and row["rps_per_core_b"] == 12_500 and row["per_core_ratio"] == 1.25
    assert f"only in A: {STAR} plaintext" in result["warnings"] and f"only in B: {FAST} plaintext" in result["warnings"]
    assert "version differs: granian 2.8.7 (A) vs 2.9.0 (B)" in result["warnings"]
    assert "Other CPU, 4 CPUs" in result["b"] and "Synthetic CPU, 2 CPUs" in result["a"]
    claims = {c["claim"]: c for c in compare.conclusions(result)}
    assert claims["plaintext, raw app: server order by best RPS"] == {
        "claim": "plaintext, raw app: server order by best RPS",
        "a": ["granian"],
        "b": ["granian"],
        "held": True,
    }
    files = compare.write(result, tmp_path / "out")
    assert {p.name for p in files} >= {"compare.md", "compare.csv", "compare-plaintext.png", "compare-plaintext.svg"}
    assert (
        "| plaintext | granian-uvloop-hyper-w1-raw | 10,000 | 25,000 | 2.5 |"
        in (tmp_path / "out/compare.md").read_text()
    )
