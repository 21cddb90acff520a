"""Copy a run's bundle into results/reference/<machine-id>/<name>/ for committing: python -m lab reference RUN NAME

Everything a reader needs (manifest, calibration, every repeat, stop and A/B pair round, failures, summary, the charts
as PNG and SVG, the report) and nothing they do not (the server and Locust logs). The bundle is validated before it is
copied, and the copy after, so that every file its report names is there."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from core.host import ROOT
from lab.bundle import BundleError, load_bundle

REFERENCE = ROOT / "results" / "reference"
# What a reader does not need: the servers' and Locust's logs. Everything else goes (a list of what to keep once left
# out the stops and the A/B pair rounds, which the report is drawn from).
DROP = ("logs",)


def publish(run_dir: Path, name: str, reference: Path = REFERENCE) -> Path:
    bundle = load_bundle(run_dir)
    target = reference / bundle.manifest.machine.machine_id / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for source in sorted(run_dir.iterdir()):
        if source.name in DROP:
            continue
        if source.is_dir():
            shutil.copytree(source, target / source.name)
        else:
            shutil.copy2(source, target / source.name)
    load_bundle(target)  # still a valid bundle without its logs
    report = target / "report.html"
    named = set(re.findall(r"charts/[\w.-]+\.(?:png|svg)", report.read_text())) if report.exists() else set()
    missing = sorted(n for n in named if not (target / n).is_file())
    if missing:
        raise BundleError(f"{report} names {', '.join(missing)}, not in the bundle: python -m lab plot {run_dir} first")
    return target


def main(run: Path, name: str) -> int:
    """python -m lab reference RUN NAME"""
    target = publish(run, name)  # a BundleError is the command line's one line
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target} ({size / 2**20:.1f} MiB)")
    return 0
