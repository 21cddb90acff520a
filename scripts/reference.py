"""Copy a run's bundle into results/reference/<machine-id>/<name>/ for committing: python -m scripts.reference RUN NAME

Everything a reader needs (manifest, calibration, every repeat, failures, summary, PNG charts, report) and nothing
they do not (the server and Locust logs; the SVG charts, which `python -m scripts.plot` redraws from the bundle).
The bundle is validated before it is copied.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from scripts.bundle import BundleError, load_bundle
from servers.matrix import ROOT

REFERENCE = ROOT / "results" / "reference"
KEEP = ("manifest.json", "calibration.json", "summary.csv", "summary.md", "report.html", "runs", "failures", "charts")


def publish(run_dir: Path, name: str, reference: Path = REFERENCE) -> Path:
    bundle = load_bundle(run_dir)
    target = reference / bundle.manifest.machine.machine_id / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in KEEP:
        source = run_dir / item
        if source.is_dir():
            shutil.copytree(source, target / item, ignore=shutil.ignore_patterns("*.svg"))
        elif source.exists():
            shutil.copy2(source, target / item)
    load_bundle(target)  # still a valid bundle without its logs
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.reference", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="results/<run-id>")
    parser.add_argument("name", help="e.g. default-server-1cpu")
    args = parser.parse_args(argv)
    try:
        target = publish(args.run, args.name)
    except BundleError as exc:
        print(f"asgi-bench-lab: error: {exc}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
