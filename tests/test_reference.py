"""The committed reference results stay readable and up to date: every bundle validates against today's schema,
`python -m lab plot` of a copy (once per bundle, shared by the tests below) gives exactly the committed summary.csv,
the report leads with the bottom line, every file a report names exists, and every image the README shows exists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from core.host import ROOT
from lab.bundle import load_bundle
from lab.report import outputs
from tests.browser import first_screen, render_dom

BUNDLES = sorted(p.parent for p in (ROOT / "results" / "reference").glob("*/*/manifest.json"))
LIMIT = 8 * 2**20  # the shared run: 42 cells, its two server CPUs add each cell with 2 workers


def test_there_are_reference_bundles() -> None:
    assert BUNDLES, "results/reference/<machine-id>/<name>/ should hold the committed reference runs"


@pytest.fixture(scope="module", params=BUNDLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def plotted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the committed bundle, a copy of it redrawn by today's `python -m lab plot`)."""
    root: Path = request.param
    copy = tmp_path_factory.mktemp("plotted") / root.name
    shutil.copytree(root, copy)
    assert outputs.plot(copy) == 0
    return root, copy


def test_reference_bundle_validates(plotted: tuple[Path, Path]) -> None:
    root, _ = plotted
    bundle = load_bundle(root)
    assert bundle.manifest.status == "complete" and bundle.repeats
    assert root.parent.name == bundle.manifest.machine.machine_id
    for committed in ("report.html", "summary.csv", "summary.md", "charts/resources.png"):
        assert (root / committed).exists(), committed
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < LIMIT, f"{root} is {size / 2**20:.1f} MiB"


def test_todays_analysis_gives_the_committed_summary(plotted: tuple[Path, Path]) -> None:
    """The measurements are the bundle's; the committed summary.csv and summary.md are what today's analysis makes of
    them (report.html too, but its PNGs are the fonts' of the machine that drew them)."""
    root, copy = plotted
    for name in ("summary.csv", "summary.md"):
        assert (copy / name).read_text() == (root / name).read_text(), name


def test_every_file_a_committed_report_names_exists(plotted: tuple[Path, Path]) -> None:
    root, _ = plotted
    for page in ("report.html", "summary.md"):
        for name in re.findall(r"charts/[\w.-]+\.(?:png|svg)", (root / page).read_text()):
            assert (root / name).is_file(), f"{page} names {name}"


def test_the_report_opens_with_the_bottom_line_of_every_app_and_scenario(plotted: tuple[Path, Path]) -> None:
    root, copy = plotted
    if root.name != "default-pinned-a":
        pytest.skip("one reference report in the browser is enough")
    box, viewport, columns = first_screen(render_dom(copy / "report.html", 1400, 900))
    assert set(columns) == {f"{s}/{a}" for s in ("plaintext", "json") for a in ("raw", "starlette", "fastapi")}
    left, top, right, bottom = box
    assert left >= 0 and right <= 1400 and 0 < top < bottom <= min(900, viewport[1]), (box, viewport)
    head = (copy / "summary.md").read_text().splitlines()[:30]
    assert sum(line.startswith("- FastAPI, json:") or line.startswith("- raw ASGI, plaintext:") for line in head) == 2


def test_readme_images_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
    assert links, "the README shows the reference charts"
    for link in links:
        assert not link.startswith(("http://", "https://")), link
        assert (ROOT / link).is_file(), f"README image {link} does not exist"


def test_a_published_bundle_keeps_every_file_its_report_names(tmp_path: Path) -> None:
    from lab.bundle import BundleError
    from lab.report.reference import publish
    from tests.synthetic import add_stop, make_bundle

    run = make_bundle(tmp_path / "run", {("granian-uvloop-hyper-w1-raw", "plaintext", 0): [20_000, 21_000, 22_000]})
    assert outputs.plot(run) == 0
    (run / "logs").mkdir()
    (run / "logs" / "server.log").write_text("not for committing\n")
    add_stop(run, "granian-uvloop-hyper-w1-raw", 1)  # the report's stopping table is drawn from it
    target = publish(run, "synthetic", tmp_path / "reference")
    assert (target / "charts" / "throughput-plaintext.svg").is_file() and not (target / "logs").exists()
    assert (target / "stops" / "granian-uvloop-hyper-w1-raw__lab__s1.json").is_file()
    (run / "charts" / "throughput-plaintext.svg").unlink()  # the report still names it
    with pytest.raises(BundleError, match=r"names charts/throughput-plaintext\.svg"):
        publish(run, "synthetic", tmp_path / "reference")


def test_pair_rounds_written_before_group_loads_still_read_as_pairs() -> None:
    """The committed A/B bundle's pair rounds name their two servers `a` and `b` under `load.pair` (before group
    loads): they read as pairs, with the same figures, and survive a trip through today's JSON."""
    import json

    from lab.analysis.side_by_side import shared
    from lab.bundle import read_model
    from loadtests.load import LoadResult, PairResult

    paths = sorted(ROOT.glob("results/reference/*/*/pairs/*.json"))
    assert paths, "the reference runs hold an A/B run's pair rounds"
    for path in paths:
        raw = json.loads(path.read_text())["load"]["pair"]
        window = read_model(path, "pair")
        assert window.ok and window.load is not None, path
        pair = window.load.pair
        assert isinstance(pair, PairResult) and pair.sides == [pair.a, pair.b] and pair.mode == raw["mode"]
        for side, name in ((pair.a, "a"), (pair.b, "b")):
            assert (side.target, side.ok, side.buckets, side.http) == (
                raw[name]["target"], raw[name]["ok"], raw[name]["buckets"], "h1"
            )  # fmt: skip
        found = shared(window)
        assert found is not None and found.log_ratio(*found.keys) is not None
        assert LoadResult.model_validate_json(window.load.model_dump_json()) == window.load
