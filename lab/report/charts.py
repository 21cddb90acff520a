"""Charts of a bundle's one analysis (lab/analysis.py; never a re-run, never a figure of their own):

    python -m lab plot results/<run-id>        # summary.csv, charts/*.png|svg, report.html, summary.md

Each chart is read in seconds: one panel per app wherever more than a handful of lines or bars would share an axis,
axes scaled to the data (a ceiling far above them is written on the panel, not drawn as its limit), legends outside
the data, and the ranks beside the bars they compare. A server has one hue and each of its stacks one shade, the
same in every chart and in compare; the line style is the event loop's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from PIL import Image

from lab.analysis.analyze import Analysis
from lab.analysis.figures import Figures
from lab.analysis.labels import app_title
from lab.report.findings import rank_text
from servers.matrix import Cell, Matrix

matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: smaller SVGs, written faster, still searchable
matplotlib.rcParams["svg.hashsalt"] = "asgi-bench-lab"  # the same ids each time: a redrawn chart is the same file
SVG_METADATA = {"Date": None}
NINES_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)
HATCHES = {"client": "///", "unclear": "...", "shared": "xx"}
LIMIT_LABELS = {
    "client": "client-limited: Locust was the limit, the bar a floor",
    "unclear": "unclear: both sides near saturation, or wrk out of CPU",
    "shared": "shared CPUs: the server and Locust took CPU from each other",
}
SERVER_COLOURMAPS = ("Blues", "Greens", "Oranges", "Purples", "Reds", "Greys")
LOOP_STYLES = ("-", "--", ":", "-.")
PERCENTILES = ("p50", "p99")  # p99.9 and beyond: the curves at the common rate (latency-at-rate)
DPI = 110


def palette(matrix: Matrix) -> dict[tuple[str, str, str], str]:
    """One colour per (server, loop, http), fixed by the matrix: a hue per server, a shade per valid stack."""
    colours = {}
    first_app = next(iter(matrix.apps))
    for n, (name, server) in enumerate(matrix.servers.items()):
        cmap = plt.get_cmap(SERVER_COLOURMAPS[n % len(SERVER_COLOURMAPS)])
        stacks = [
            (name, loop, http)
            for loop in matrix.loops
            for http in server.http
            if matrix.invalid_reason(Cell(server=name, loop=loop, http=http, workers=1, app=first_app)) is None
        ]
        for i, stack in enumerate(stacks):
            colours[stack] = matplotlib.colors.to_hex(cmap(0.9 - 0.5 * i / max(len(stacks) - 1, 1)))
    return colours


@dataclass(frozen=True)
class Style:
    """How one stack is drawn in every chart of a run, compare included."""

    colours: dict[tuple[str, str, str], str]
    loops: tuple[str, ...]

    @classmethod
    def of(cls, matrix: Matrix) -> Style:
        return cls(palette(matrix), tuple(matrix.loops))

    def colour(self, cell: Cell) -> str:
        return self.colours.get((cell.server, cell.loop, cell.http), "#777777")

    def line(self, cell: Cell) -> str:
        return LOOP_STYLES[self.loops.index(cell.loop) % len(LOOP_STYLES)] if cell.loop in self.loops else "-"


@dataclass(frozen=True)
class Chart:
    """A chart written: its file stem, what it shows (the report's caption) and its files."""

    name: str
    title: str
    files: tuple[Path, ...]


def caption(a: Analysis) -> str:
    m = a.manifest
    machine, config = m.machine, m.config
    when = datetime.fromtimestamp(m.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = "container" if machine.container else "local"
    workers = f"{config.load_workers} Locust worker{'s' if config.load_workers != 1 else ''}"
    return (
        f"{machine.cpu_model}, {machine.logical_cpus} CPUs, {machine.memory_bytes / 2**30:.0f} GiB, {machine.os}, "
        f"kernel {machine.kernel}, Python {machine.python} ({where}) | server CPUs {config.server_cpus}, "
        f"load CPUs {config.load_cpus} ({workers}), {config.users} connections, "
        f"{config.repeats}+ rounds × {config.duration:g} s | run {m.run_id}, {when}"
    )


def nines(percentile: float) -> float:
    return -math.log10(1 - percentile / 100) if percentile < 100 else 6.0


def save(fig: plt.Figure, a: Analysis, out: Path, name: str) -> tuple[Path, ...]:
    """The run's caption under the figure, then PNG and SVG. The PNG is drawn once on the canvas and kept in 256
    colours, which hold every line and bar here: a third of the bytes, so reports and bundles stay small. A fast
    octree palette and zlib's default level: under cProfile, a default bundle's 13 median cuts took 1.08 s (octree
    0.12 s) and encoding them with `optimize` 0.69 s, for a tenth fewer bytes."""
    fig.text(0.01, 0.005, caption(a), fontsize=6.5, color="#555555", ha="left", va="bottom")
    paths = (out / f"{name}.png", out / f"{name}.svg")
    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    image.save(paths[0])
    fig.savefig(paths[1], metadata=SVG_METADATA)
    plt.close(fig)
    return paths


def app_panels(a: Analysis, rows: int, height: float, **kwargs: object) -> tuple[plt.Figure, list[list[plt.Axes]]]:
    """A grid with one column per app: per-app small multiples, so no axis carries more than one app's stacks."""
    apps = a.apps
    fig, axes = plt.subplots(rows, len(apps), figsize=(14, height), squeeze=False, **kwargs)  # type: ignore[arg-type]
    for ax, app in zip(axes[0], apps, strict=True):
        ax.set_title(app_title(app, a.matrix), fontsize=10, fontweight="bold")
    return fig, [list(row) for row in axes]


def stack_legend(fig: plt.Figure, a: Analysis, style: Style, extra: list[Line2D | Patch], lines: bool) -> None:
    """One legend for the figure, above the panels: each stack (colour, and line style = loop), then `extra`."""
    seen: dict[str, Line2D | Patch] = {}
    for f in a.points:
        if f.ok and f.stack not in seen:
            seen[f.stack] = (
                Line2D([], [], color=style.colour(f.cell), linestyle=style.line(f.cell), label=f.stack)
                if lines
                else Patch(color=style.colour(f.cell), label=f.stack)
            )
    handles = [*seen.values(), *extra]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 4), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.965))  # fmt: skip


def layout(fig: plt.Figure, top: float, left: float = 0.06, bottom: float = 0.1, wspace: float = 0.12,
           hspace: float = 0.12) -> None:  # fmt: skip
    """Fixed margins, between the caption and the legend above the panels: tight_layout measured every tick label
    of every panel and took half of the drawing time."""
    fig.subplots_adjust(left=left, right=0.99, bottom=bottom, top=top, wspace=wspace, hspace=hspace)


KILO_TICKS = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0")


def log_axis(axis: matplotlib.axis.Axis) -> None:
    """A log axis with ticks at 1, 2 and 5 per decade written as plain numbers (500, 1k, 2k), and no minor ticks:
    readable, and cheap to draw on many panels."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    axis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))


# --- throughput ------------------------------------------------------------------------------------------------------


def draw_throughput(a: Analysis, scenario: str, style: Style, out: Path) -> Chart:
    """Per app, the stacks fastest first: each one's RPS alone (the median, the range of its repeats), its ratio to
    the fastest measured side by side, its rank, and what limited it."""
    fig, axes = app_panels(a, 1, 4.6)
    ceiling = a.calibration.point(scenario) if a.calibration else None
    limits: set[str] = set()
    drawn_ceiling = False
    for ax, app in zip(axes[0], a.apps, strict=True):
        ranking = a.ranking(scenario, app)
        if ranking is None:
            ax.set_axis_off()
            continue
        bars = list(ranking.stacks)
        top = 0.0
        for y, bar in enumerate(bars):
            f = a.point(bar.key, scenario)
            assert f is not None
            hatch = HATCHES.get(bar.limit or "")
            limits.add(bar.limit or "")
            c = style.colour(f.cell)
            ax.barh(y, bar.median, 0.75, color=c, edgecolor="black" if hatch else c,
                    hatch=hatch, linewidth=0.5)  # fmt: skip
            right = bar.median
            if bar.measured:
                low, high = bar.measured
                below, above = max(0.0, bar.median - low), max(0.0, high - bar.median)  # the median is rounded
                ax.errorbar(bar.median, y, xerr=[[below], [above]], fmt="none", capsize=2.5,
                            ecolor="#222222", linewidth=1)  # fmt: skip
                right = max(right, high)
            if bar.limit == "client" and f.referee_rps:
                ax.plot(f.referee_rps, y, marker="D", color="black", markersize=4, zorder=5)
                right = max(right, f.referee_rps)
            ratio = "" if bar.versus_best is None else f"  {bar.versus_best.ratio:.2f}×"
            said = f"{bar.median / 1000:.1f}k{ratio}  {rank_text(bar.rank)}"
            ax.annotate(said, (right, y), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8, fontweight="bold" if bar.rank == 1 else "normal")  # fmt: skip
            top = max(top, right)
        ax.set_yticks(range(len(bars)), [b.stack for b in bars], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.28)
        ax.xaxis.set_major_formatter(KILO_TICKS)
        ax.grid(axis="x", alpha=0.3)
        if ceiling and ceiling.ceiling_rps <= top * 1.28:
            ax.axvline(ceiling.ceiling_rps, color="#d62728", linestyle="--", linewidth=1)
            drawn_ceiling = True
    axes[0][0].set_xlabel("requests/s alone (bar: median; whisker: lowest and highest repeat); × the fastest side "
                          "by side; #: rank", fontsize=8)  # fmt: skip
    fig.suptitle(f"Throughput — {scenario}: stacks fastest first, equal ranks not told apart side by side",
                 fontsize=11, y=0.995)  # fmt: skip
    extra: list[Line2D | Patch] = [
        Patch(facecolor="white", edgecolor="black", hatch=HATCHES[x], label=LIMIT_LABELS[x])
        for x in HATCHES
        if x in limits
    ]
    if "client" in limits:
        extra.append(Line2D([], [], marker="D", linestyle="", color="black", label="wrk on the same server"))
    if ceiling and drawn_ceiling:
        extra.append(Line2D([], [], color="#d62728", linestyle="--", label=f"Locust's ceiling ({ceiling.ceiling})"))
    elif ceiling:  # far above every bar: said, not drawn, so the bars keep the width of their panel
        said = f"Locust's ceiling {ceiling.ceiling_rps / 1000:.0f}k ({ceiling.ceiling}): above every bar"
        extra.append(Line2D([], [], color="#d62728", linestyle="--", label=said))
    if extra:
        fig.legend(handles=extra, loc="lower center", ncol=min(len(extra), 3), fontsize=7.5, frameon=False,
                   bbox_to_anchor=(0.5, 0.035))  # fmt: skip
    layout(fig, 0.86, left=0.12, bottom=0.25 if extra else 0.14, wspace=0.55)
    name = f"throughput-{scenario}"
    return Chart(name, f"Throughput, {scenario}: per app, the stacks fastest first, RPS alone and the ratio to the "
                 "fastest side by side",
                 save(fig, a, out, name))  # fmt: skip


def draw_overhead(a: Analysis, scenario: str, style: Style, out: Path) -> Chart:
    """Per stack: each framework's RPS as % of the raw app's on the same stack, measured side by side, with its 95%
    interval."""
    rows = [o for o in a.overhead if o.scenario == scenario]
    rows.sort(key=lambda o: -max(p.ratio for p in o.pct.values()))
    apps = [app for app in a.apps if app != a.baseline and any(app in o.pct for o in rows)]
    fig, ax = plt.subplots(figsize=(14, max(4.0, 0.3 * len(rows) * max(len(apps), 1) + 1.5)))
    height = 0.8 / max(len(apps), 1)
    right = 100.0
    for i, app in enumerate(apps):
        for y, o in enumerate(rows):
            if app not in o.pct:
                continue
            p = o.pct[app]
            f = next(x for x in a.closed(scenario) if x.stack == o.stack)
            pos = y + (i - (len(apps) - 1) / 2) * height
            shade = 1.0 - 0.45 * i / max(len(apps) - 1, 1)
            ax.barh(pos, 100 * p.ratio, height * 0.9, color=style.colour(f.cell), alpha=shade,
                    edgecolor="black", linewidth=0.4)  # fmt: skip
            if p.measurable:
                ax.errorbar(100 * p.ratio, pos, xerr=[[100 * (p.ratio - p.low)], [100 * (p.high - p.ratio)]],
                            fmt="none", capsize=2, ecolor="#222222", linewidth=0.8)  # fmt: skip
            end = 100 * (p.high if p.measurable else p.ratio)
            right = max(right, end)
            ax.annotate(f"{app_title(app, a.matrix)} {100 * p.ratio:.0f}%", (end, pos), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7.5)  # fmt: skip
    ax.axvline(100, color="#333333", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [o.stack for o in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, right * 1.15)
    baseline = app_title(a.baseline, a.matrix)
    ax.set_xlabel(f"% of the {baseline} app's requests/s on the same stack, side by side (100% = no framework cost; "
                  "whisker: 95% CI)")  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(
        f"Framework cost — {scenario}: what Starlette and FastAPI keep of the raw app's throughput", fontsize=11
    )
    layout(fig, 0.92, left=0.14, bottom=0.14)
    name = f"overhead-{scenario}"
    return Chart(name, f"Framework cost, {scenario}: each app's RPS as % of the raw app's on the same stack, side by "
                 "side", save(fig, a, out, name))  # fmt: skip


def draw_protocols(a: Analysis, scenario: str, style: Style, out: Path) -> Chart:
    """Per server, loop and app: HTTP/2's throughput ÷ HTTP/1.1's (a.protocols) with its 95% interval, on a log
    axis centred on 1, in the h2c stack's colour."""
    apps = list(a.apps)
    rows = sorted((p for p in a.protocols if p.paired.scenario == scenario),
                  key=lambda p: (apps.index(p.h1.app) if p.h1.app in apps else len(apps), -p.paired.ratio))  # fmt: skip
    fig, ax = plt.subplots(figsize=(12, max(3.2, 0.42 * len(rows) + 2.0)))
    spans = [math.log(1.1)]
    for y, protocol in enumerate(rows):
        p = protocol.paired
        colour = style.colour(protocol.h2)
        if p.measurable:
            ax.errorbar(math.log(p.ratio), y, xerr=[[math.log(p.ratio / p.low)], [math.log(p.high / p.ratio)]],
                        fmt="none", capsize=3, ecolor="#222222", linewidth=1)  # fmt: skip
            spans += [abs(math.log(p.low)), abs(math.log(p.high))]
            said = f"{p.ratio:.2f}× (95% CI {p.low:.2f}–{p.high:.2f})" + ("" if p.significant else ", no difference")
        else:
            said = f"{p.ratio:.2f}× (one round: no interval)"
        spans.append(abs(math.log(p.ratio)))
        ax.plot(math.log(p.ratio), y, "o", color=colour, markersize=8, markeredgecolor="black", markeredgewidth=0.5)
        ax.annotate(said, (math.log(p.ratio), y), xytext=(0, 9), textcoords="offset points", ha="center",
                    fontsize=8, fontweight="bold" if p.significant else "normal")  # fmt: skip
    span = max(spans) * 1.25
    ax.set_xlim(-span, span)  # centred on 1: as far each way
    ticks = [t for t in (0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0) if abs(math.log(t)) <= span]
    ax.set_xticks([math.log(t) for t in ticks], [f"{t:g}×" for t in ticks], fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [f"{app_title(p.h1.app, a.matrix)} · {p.stack}" for p in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.4, -0.7)
    ax.set_xlabel("requests/s over HTTP/2 (h2c) ÷ over HTTP/1.1, same server, loop, workers and app, side by side "
                  "(log scale; whisker: 95% CI)", fontsize=8)  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    streams = a.manifest.config.streams
    ax.set_title(f"HTTP/2 vs HTTP/1.1 — {scenario}: each server's h2c cell ({streams} streams per connection) "
                 "against its HTTP/1.1 twin", fontsize=11)  # fmt: skip
    layout(fig, 0.88, left=0.24, bottom=0.12 + 0.6 / fig.get_figheight())
    name = f"http2-{scenario}"
    return Chart(name, f"HTTP/2 vs HTTP/1.1, {scenario}: h2c's throughput ÷ HTTP/1.1's per server, loop and app, "
                 "with its 95% interval", save(fig, a, out, name))  # fmt: skip


# --- latency and cost at equal load -----------------------------------------------------------------------------------


def sweep_of(a: Analysis, scenario: str, app: str) -> dict[str, list[Figures]]:
    """Per cell of the app: its swept points in rate order."""
    lines: dict[str, list[Figures]] = {}
    for f in a.swept_points(scenario):
        if f.cell.app == app:
            lines.setdefault(f.key, []).append(f)
    return {k: sorted(v, key=lambda f: f.offered) for k, v in lines.items()}


def draw_rate_grid(
    a: Analysis, scenario: str, style: Style, out: Path, name: str, title: str, rows: list[tuple[str, str]],
    value: Callable[[Figures, str], float | None], served_only: bool, log_y: bool,
) -> Chart:  # fmt: skip
    """Rows of measures x one column per app, against the offered rate; the rates a cell did not serve marked x."""
    height = 2.3 * len(rows) + 1.3
    fig, axes = app_panels(a, len(rows), height, sharex=True, sharey="row")
    for r, (measure, label) in enumerate(rows):
        for ax, app in zip(axes[r], a.apps, strict=True):
            for pts in sweep_of(a, scenario, app).values():
                shown = [f for f in pts if value(f, measure) is not None and (f.served or not served_only)]
                if not shown:
                    continue
                c = style.colour(shown[0].cell)
                ax.plot([f.offered for f in shown], [value(f, measure) for f in shown], style.line(shown[0].cell),
                        color=c, linewidth=1.2, marker="o" if served_only else None, markersize=2.5)  # fmt: skip
                short = [f for f in shown if not f.served]
                ax.plot([f.offered for f in short], [value(f, measure) for f in short], "x", color=c, markersize=6)
            ax.set_xscale("log")
            log_axis(ax.xaxis)
            if log_y:
                ax.set_yscale("log")
                log_axis(ax.yaxis)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7.5)
            if r == len(rows) - 1:
                ax.set_xlabel("offered requests/s (open model, Poisson)", fontsize=8)
        axes[r][0].set_ylabel(label, fontsize=8)
        if not log_y:  # after every panel of the row is drawn: the row shares one axis
            axes[r][0].set_ylim(bottom=0)
    extra: list[Line2D | Patch] = []
    if not served_only:
        extra.append(Line2D([], [], marker="x", linestyle="", color="black", label="rate not served (past the knee)"))
    stack_legend(fig, a, style, extra, lines=True)
    fig.suptitle(title, fontsize=11, y=0.995)
    layout(fig, 1 - 1.0 / height, bottom=0.6 / height, wspace=0.08, hspace=0.1)
    return Chart(name, title, save(fig, a, out, name))


def draw_sweep(a: Analysis, scenario: str, style: Style, out: Path) -> Chart:
    def value(f: Figures, measure: str) -> float | None:
        us = f.latency.percentiles_us.get(measure) if f.latency else None
        return us / 1000 if us else None

    rows = [(p, f"{p} latency, ms (log)") for p in PERCENTILES]
    return draw_rate_grid(
        a, scenario, style, out, f"latency-vs-rate-{scenario}",
        f"Latency at equal offered load — {scenario}: from each request's scheduled time", rows, value, False, True,
    )  # fmt: skip


def draw_cost(a: Analysis, scenario: str, style: Style, out: Path) -> Chart:
    def value(f: Figures, measure: str) -> float | None:
        return getattr(f, measure)

    rows = [
        ("server_cpus_us", "server CPUs busy, µs/request\n(interrupts included)"),
        ("server_us", "server processes' own CPU,\nµs/request"),
    ]
    return draw_rate_grid(
        a, scenario, style, out, f"cost-vs-rate-{scenario}",
        f"Cost per request at equal load — {scenario} (lower is cheaper; rates each cell served)", rows, value, True,
        False,
    )  # fmt: skip


def percentile_axes(ax: plt.Axes) -> None:
    ax.set_xticks([nines(p) for p in NINES_TICKS], [f"{p:g}%" for p in NINES_TICKS], fontsize=7.5)
    ax.set_yscale("log")
    log_axis(ax.yaxis)
    ax.set_xlabel("percentile (log scale in nines)", fontsize=8)
    ax.grid(alpha=0.3)


def draw_curves(a: Analysis, found: list[Figures], style: Style, out: Path, name: str, title: str) -> Chart:
    """Percentile curves, one panel per app."""
    fig, axes = app_panels(a, 1, 4.6, sharey=True)
    for ax, app in zip(axes[0], a.apps, strict=True):
        for f in found:
            if f.cell.app != app or not f.latency:
                continue
            curve = [(nines(p), us / 1000) for p, us in f.latency.curve_us if p < 100 and us]
            if curve:
                ax.plot(*zip(*curve, strict=True), style.line(f.cell), color=style.colour(f.cell), linewidth=1.3)
        percentile_axes(ax)
    axes[0][0].set_ylabel("latency, ms (log)", fontsize=8)
    stack_legend(fig, a, style, [], lines=True)
    fig.suptitle(title, fontsize=11, y=0.995)
    layout(fig, 1 - 1.0 / 4.6, bottom=0.6 / 4.6, wspace=0.05)
    return Chart(name, title, save(fig, a, out, name))


def draw_resources(a: Analysis, style: Style, out: Path) -> Chart:
    """Per cell (stacks grouped, apps in matrix order): CPU per request, cores busy and peak RSS; startup per server."""
    cells: dict[str, list[Figures]] = {}
    for f in a.points:
        if f.ok:
            cells.setdefault(f.key, []).append(f)
    keys = sorted(cells, key=lambda k: (a.stacks.index(cells[k][0].stack), a.apps.index(cells[k][0].cell.app)))
    first = [cells[k][0] for k in keys]
    labels = [f.label for f in first]
    colours = [style.colour(f.cell) for f in first]

    def closed_median(k: str) -> float:
        values = sorted(f.server_cpus_us for f in cells[k] if not f.offered and f.server_cpus_us)
        return statistics.median(values) if values else 0.0

    fig, (us, cpu, rss, start) = plt.subplots(1, 4, figsize=(14, max(4.0, 0.3 * len(keys) + 1.8)),
                                              gridspec_kw={"width_ratios": [3, 2, 2, 1.3]})  # fmt: skip
    ys = range(len(keys))
    us.barh(ys, [closed_median(k) for k in keys], color=colours)
    us.set_xlabel("server CPU µs per request\n(throughput repeats, median over scenarios)", fontsize=8)
    cpu.barh(ys, [max(f.server_cpu_cores or 0 for f in cells[k]) for k in keys], color=colours)
    cpu.set_xlabel("server processes' CPU, cores\n(the busiest point)", fontsize=8)
    rss.barh(ys, [max(f.server_rss_mb or 0 for f in cells[k]) for k in keys], color=colours)
    rss.set_xlabel("server RSS, MiB (peak, all processes)", fontsize=8)
    us.set_yticks(ys, labels, fontsize=7)
    for ax in (cpu, rss):
        ax.set_yticks(ys, [""] * len(keys))
    for ax in (us, cpu, rss):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7.5)
    startups: dict[str, list[float]] = {}
    for f in first:
        if f.startup_s is not None:
            startups.setdefault(f.cell.server, []).append(f.startup_s)
    servers = list(startups)
    start.bar(servers, [statistics.median(v) for v in startups.values()], color="#7f7f7f")
    start.set_title("startup to first correct\nanswer, s (median)", fontsize=8)
    start.tick_params(labelsize=8)
    start.grid(axis="y", alpha=0.3)
    fig.suptitle("Server cost and resources during load, and startup time", fontsize=11)
    layout(fig, 0.92, left=0.17, bottom=0.14, wspace=0.14)
    return Chart("resources", "Server CPU per request, cores busy, peak RSS per cell; startup per server",
                 save(fig, a, out, "resources"))  # fmt: skip


def render(a: Analysis, out: Path | None = None) -> list[Chart]:
    """Draw every chart the analysis has data for, into `out` (default: the bundle's charts/)."""
    out = out or a.root / "charts"
    out.mkdir(parents=True, exist_ok=True)
    style = Style.of(a.matrix)
    charts: list[Chart] = []
    for scenario in a.scenarios:
        charts.append(draw_throughput(a, scenario, style, out))
        if any(o.scenario == scenario for o in a.overhead):
            charts.append(draw_overhead(a, scenario, style, out))
        if any(p.paired.scenario == scenario for p in a.protocols):
            charts.append(draw_protocols(a, scenario, style, out))
    for scenario in a.swept:
        rate = a.common_rate.get(scenario)
        if rate:
            at = [f for f in a.swept_points(scenario) if f.offered == rate]
            title = f"Latency percentiles at {rate:,.0f} requests/s offered — {scenario}: every cell at the same load"
            charts.append(draw_curves(a, at, style, out, f"latency-at-rate-{scenario}", title))
        charts.append(draw_sweep(a, scenario, style, out))
        charts.append(draw_cost(a, scenario, style, out))
    for scenario in a.scenarios:
        title = f"At saturation — {scenario}: latency = connections ÷ throughput (closed model); see equal load instead"
        charts.append(draw_curves(a, a.closed(scenario), style, out, f"latency-saturation-{scenario}", title))
    if a.points:
        charts.append(draw_resources(a, style, out))
    return charts
