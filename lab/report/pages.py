"""A bundle's pages from its one analysis (lab/analysis/analyze.py): report.html (self-contained: images inline, no
network) and summary.md, rendered from the Jinja2 templates in lab/report/templates/.

Both pages open with the bottom line (lab/report/findings.py): one table of every stack x app x scenario with its RPS,
interval and rank, and one sentence per app and scenario; then per app and scenario the ranked stacks, the warnings
that can change a conclusion, a glossary, the charts, the leaders at equal load, every comparison, the full table,
the calibration, how the run went, and the machine with every version.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from core.host import atomic_write
from lab.analysis.analyze import Analysis
from lab.analysis.comparisons import Stated
from lab.analysis.labels import app_title
from lab.report import findings
from lab.report.charts import Chart, caption
from lab.report.summary import Row, summary_rows
from lab.verdict import REFEREE_ABOVE, REFEREE_SHARE
from servers.matrix import Matrix

TOOL_PACKAGES = ("locust", "gevent", "hdrhistogram", "matplotlib", "scipy", "numpy", "jinja2")


def key_packages(matrix: Matrix) -> list[str]:
    """The packages a result depends on: every one the matrix names (servers, HTTP parsers, loops, apps), then the
    lab's own measuring and drawing tools."""
    return list(dict.fromkeys([*matrix.packages(), *TOOL_PACKAGES]))


# --- report.html and summary.md ----------------------------------------------------------------------------------

TABLE_COLUMNS = [
    ("scenario", "scenario"), ("label", "cell"), ("offered_rps", "offered RPS"), ("rps_median", "RPS (median)"),
    ("rps_min", "min"), ("rps_max", "max"),
    ("limit_shown", "limit"), ("referee_rps", "wrk RPS"), ("lab_vs_referee", "Locust ÷ wrk"), ("p50_us", "p50 µs"),
    ("p99_us", "p99 µs"), ("p99_9_us", "p99.9 µs"), ("send_late_p99_us", "send late p99 µs"), ("errors", "errors"),
    ("server_cpus_us_per_req", "server CPU µs/req"), ("client_us_per_req", "client µs/req"),
    ("projected_rps", "projected capacity"), ("server_rss_mb", "RSS MiB"), ("startup_s", "startup s"),
    ("repeats", "repeats"), ("repeats_failed", "failed"), ("unsteady", "unsteady"), ("disturbed", "re-run"),
    ("status", "status"), ("key", "cell key"),
]  # fmt: skip


def shown(value: Any) -> str:
    """A table cell's text: thousands separated, small values as they are, booleans as 'yes'."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:g}"
    return str(value)


def verdict_groups(a: Analysis) -> list[tuple[str, str, list[Stated]]]:
    """The comparisons by what changes between their cells: (title, note, comparisons)."""
    groups: dict[tuple[str, ...], list[Stated]] = {}
    for s in a.comparisons:
        groups.setdefault(s.changes, []).append(s)
    return [
        (findings.change_title(changes), findings.CHANGE_NOTES.get(changes, ""), said)
        for changes, said in groups.items()
    ]


def code(text: str) -> Markup:
    """Plain text for HTML, with `backticked` names as <code>."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("lab.report", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(
        kilo=findings.kilo, spread=findings.spread, times=findings.times, app=app_title, shown=shown,
        verdict=findings.verdict_text, leaders=findings.leaders_text, rank=findings.rank_text, code=code,
        entry=findings.entry_text,
    )  # fmt: skip
    env.globals.update(p99=findings.p99_text)
    return env


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    png: str  # base64
    files: str  # the chart's files, as the caption names them


@dataclass(frozen=True)
class StopsSection:
    plan: str
    columns: tuple[str, ...]
    rows: list[list[str]]
    stability: list[str]
    png: str | None  # base64 of the timeline chart


@dataclass(frozen=True)
class Page:
    """What both templates read: the analysis, and the words and tables lab/report/findings.py makes of it."""

    a: Analysis
    when: str
    caption: str
    compact: findings.Compact
    spans: list[tuple[str, int]]
    sentences: list[str]
    ab: list[str]
    at_common: list
    glossary: tuple[tuple[str, str], ...]
    groups: list[tuple[str, str, list[Stated]]]
    protocols: list[tuple[str, str, str, str]]
    figures: list[Figure]
    rows: list[Row]
    columns: list[tuple[str, str]]
    referee_band: str
    packages: list[tuple[str, str]]
    config_json: str
    parts: list[tuple[int, str, str | None, str]]
    stops: StopsSection | None


def chart_figures(charts: list[Chart]) -> list[Figure]:
    found = []
    for chart in charts:
        png = next((p for p in chart.files if p.suffix == ".png" and p.exists()), None)
        if png is None:
            continue
        svg = png.with_suffix(".svg")
        # captions name only files that exist: a reference bundle keeps its PNGs, not its SVGs
        files = f"charts/{png.name}" + (f", charts/{svg.name}" if svg.exists() else " (PNG only)")
        found.append(Figure(chart.name, chart.title, base64.b64encode(png.read_bytes()).decode(), files))
    return found


def stopping(a: Analysis) -> StopsSection | None:
    """The bundle's stops under load (lab/lifecycle/stops.py), when it has any: the table, each outcome's stability
    and the timeline chart."""
    from lab.lifecycle.stops import StopPlan
    from lab.report.stops import COLUMNS, rows, stability

    stops = list(a.stops)
    if not stops:
        return None
    png = a.root / "charts" / "stops-timeline.png"
    return StopsSection(
        StopPlan().describe(), COLUMNS, rows(stops), [line.removeprefix("- ") for line in stability(stops)],
        base64.b64encode(png.read_bytes()).decode() if png.exists() else None,
    )  # fmt: skip


def page(a: Analysis, charts: list[Chart]) -> Page:
    m = a.manifest
    table = findings.compact(a)
    return Page(
        a=a, when=datetime.fromtimestamp(m.started, UTC).strftime("%Y-%m-%d %H:%M UTC"), caption=caption(a),
        compact=table,
        spans=[(s, sum(1 for c in table.columns if c[0] == s)) for s in dict.fromkeys(c[0] for c in table.columns)],
        sentences=findings.sentences(a), ab=findings.ab_lines(a), at_common=findings.at_common_rate(a),
        glossary=findings.GLOSSARY, groups=verdict_groups(a), protocols=findings.protocols_rows(a),
        figures=chart_figures(charts), rows=summary_rows(a), columns=TABLE_COLUMNS,
        referee_band=f"{REFEREE_SHARE:g}–{REFEREE_ABOVE:g}",
        packages=[(p, m.versions[p]) for p in key_packages(a.matrix) if p in m.versions],
        config_json=json.dumps({"config": m.config.model_dump(mode="json"), "versions": m.versions}, indent=1),
        parts=[
            (i, datetime.fromtimestamp(p.started, UTC).strftime("%H:%M:%S"),
             datetime.fromtimestamp(p.ended, UTC).strftime("%H:%M:%S") if p.ended else None, p.status)
            for i, p in enumerate(m.parts, start=1)
        ],
        stops=stopping(a),
    )  # fmt: skip


def write(a: Analysis, charts: list[Chart]) -> list[Path]:
    env = environment()
    given = page(a, charts)
    data = {f.name: getattr(given, f.name) for f in fields(given)} | {"m": a.manifest}
    report, summary = a.root / "report.html", a.root / "summary.md"
    atomic_write(report, env.get_template("report.html.j2").render(data))
    atomic_write(summary, env.get_template("summary.md.j2").render(data))
    return [report, summary]
