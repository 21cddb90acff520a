"""The committed reference results stay readable: every bundle validates against today's schema and charts, and
every image the README shows exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.host import ROOT
from lab import charts
from lab.bundle import load_bundle

BUNDLES = sorted(p.parent for p in (ROOT / "results" / "reference").glob("*/*/manifest.json"))


def test_there_are_reference_bundles() -> None:
    assert BUNDLES, "results/reference/<machine-id>/<name>/ should hold the committed reference runs"


@pytest.mark.parametrize("root", BUNDLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reference_bundle_validates_and_charts(root: Path, tmp_path: Path) -> None:
    bundle = load_bundle(root)
    assert bundle.manifest.status == "complete" and bundle.repeats
    assert root.parent.name == bundle.manifest.machine.machine_id
    data, files = charts.render(bundle, out=tmp_path)  # today's chart code still reads it
    assert data["scenarios"] and files
    for committed in ("report.html", "summary.csv", "summary.md", "charts/resources.png"):
        assert (root / committed).exists(), committed
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 6 * 2**20, f"{root} is {size / 2**20:.1f} MiB"


def test_readme_images_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
    assert links, "the README shows the reference charts"
    for link in links:
        assert not link.startswith(("http://", "https://")), link
        assert (ROOT / link).is_file(), f"README image {link} does not exist"
