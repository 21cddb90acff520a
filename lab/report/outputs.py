"""A bundle's outputs, the one pipeline the runner (at the end of a run) and `python -m lab plot` both run: from the
bundle's one analysis, summary.csv; then lifecycle.md and the stop timeline when the run stopped servers under load;
then the charts, report.html and summary.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.analysis.analyze import Analysis, analyze
from lab.bundle import load_bundle
from lab.report.charts import render
from lab.report.pages import write as write_pages
from lab.report.stops import write_outputs as write_stops
from lab.report.summary import write_summary_csv
from servers.matrix import Matrix


@dataclass
class Outputs:
    analysis: Analysis
    summary: Path
    stops: list[Path] = field(default_factory=list)  # lifecycle.md and the timeline chart
    charts: list[Path] = field(default_factory=list)
    pages: list[Path] = field(default_factory=list)  # report.html, summary.md
    skipped: str = ""  # why no charts or pages were drawn
    error: str = ""  # a chart or page that failed (the bundle itself is on disk, whole)

    @property
    def files(self) -> list[Path]:
        return [self.summary, *self.stops, *self.charts, *self.pages]


def write(root: Path, matrix: Matrix, drawn: bool = True) -> Outputs:
    """Every output of the bundle at `root`; `drawn=False` writes summary.csv only (an interrupted run is quick to
    end, and a resume draws the rest)."""
    bundle = load_bundle(root)
    analysis = analyze(bundle, matrix)
    out = Outputs(analysis, write_summary_csv(analysis))
    if not drawn:
        out.skipped = "interrupted"
        return out
    if bundle.stops:
        out.stops = write_stops(root, bundle.stops)
    if not any(r.ok for r in bundle.repeats):
        out.skipped = "no measured results"
        return out
    try:
        charts = render(analysis)
        out.charts = [f for chart in charts for f in chart.files]
        out.pages = write_pages(analysis, charts)
    except Exception as exc:  # a chart's bug must not lose the run: the bundle is already on disk
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def plot(root: Path) -> int:
    """python -m lab plot BUNDLE: every output again from the bundle's records (as the runner writes them at the end
    of a run), e.g. after the lab's analysis changed; each file written is printed. 1 when a chart failed."""
    from core.errors import say
    from servers.matrix import load

    out = write(root, load())
    for path in out.files:
        print(path)
    if out.error:
        say(f"charts failed: {out.error}")
        return 1
    return 0
