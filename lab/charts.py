"""Charts from a result bundle (never from a re-run): throughput, framework overhead, latency, load, resources.

    python -m lab plot results/<run-id>        # charts/*.png|svg, report.html, summary.md

chart_data() computes every plotted number from the bundle; render() only draws it, so tests check the numbers.
Colours belong to a server/loop/http stack in matrix order, the same in every chart and every run; line styles and
shades belong to an app in matrix order.
"""

from __future__ import annotations

import math
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

from lab.bundle import Bundle, BundleError, load_bundle
from lab.results import Point, points
from servers.matrix import Matrix, load

LINE_STYLES = ("-", "--", ":", "-.")
NINES_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)
CLIENT_BOUND_HATCH = "///"
SERVER_COLOURMAPS = ("Blues", "Greens", "Oranges", "Purples", "Reds", "Greys")


def app_style(matrix: Matrix, app: str) -> str:
    """The line style of an app: the matrix's first app solid, then dashed, dotted..."""
    apps = list(matrix.apps)
    return LINE_STYLES[apps.index(app) % len(LINE_STYLES)] if app in apps else "-"


def app_alpha(matrix: Matrix, app: str) -> float:
    """The bar shade of an app: the matrix's first app full, later ones lighter."""
    apps = list(matrix.apps)
    return 1.0 - 0.55 * apps.index(app) / max(len(apps) - 1, 1) if app in apps else 1.0


def palette(matrix: Matrix) -> dict[str, str]:
    """One colour per server/loop/http stack, fixed by the matrix's order: a hue per server, a shade per stack."""
    colours = {}
    for n, (name, server) in enumerate(matrix.servers.items()):
        cmap = plt.get_cmap(SERVER_COLOURMAPS[n % len(SERVER_COLOURMAPS)])
        stacks = [f"{name} {loop}/{h}" for loop in matrix.loops for h in server.http]
        for i, label in enumerate(stacks):
            colours[label] = matplotlib.colors.to_hex(cmap(0.9 - 0.55 * i / max(len(stacks) - 1, 1)))
    return colours


def colour(colours: dict[str, str], name: str) -> str:
    return colours.get(name.split(" ×")[0], "#777777")


def nines(percentile: float) -> float:
    return -math.log10(1 - percentile / 100) if percentile < 100 else 6.0


# --- the numbers ---------------------------------------------------------------------------------------------------


def throughput_bars(closed: list[Point], apps: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per app (matrix order), one bar per cell: median RPS, min to max of repeats, client-bound."""
    by_app: dict[str, list[dict[str, Any]]] = {}
    for p in closed:
        by_app.setdefault(p.cell.app, []).append(
            {
                "key": p.key,
                "stack": p.stack,
                "app": p.cell.app,
                "median": p.median,
                "min": round(min(p.rps), 1),
                "max": round(max(p.rps), 1),
                "repeats": len(p.repeats),
                "client_bound": p.client_bound,
            }
        )
    return {app: by_app[app] for app in apps if app in by_app}


def overhead_rows(closed: list[Point], apps: list[str]) -> list[dict[str, Any]]:
    """Per stack: each app's median RPS, and as % of the baseline app (the matrix's first) on the same stack."""
    baseline = apps[0]
    by_stack: dict[str, dict[str, float]] = {}
    for p in closed:
        by_stack.setdefault(p.stack, {})[p.cell.app] = p.median
    return [
        {
            "stack": name,
            **{app: values.get(app) for app in apps},
            **{
                f"{app}_pct_of_{baseline}": round(100 * values[app] / values[baseline], 1)
                for app in apps
                if app in values
            },
        }
        for name, values in by_stack.items()
        if values.get(baseline, 0) > 0
    ]


def latency_rows(closed: list[Point]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Percentile curves and p50/p99 bars from each cell's merged histogram."""
    curves, bars = [], []
    for p in closed:
        latency = p.latency
        curves.append({"key": p.key, "stack": p.stack, "app": p.cell.app, "curve": latency.curve_us})
        percentiles = latency.percentiles_us
        bars.append(
            {
                "key": p.key,
                "stack": p.stack,
                "app": p.cell.app,
                "p50_us": percentiles.get("p50"),
                "p99_us": percentiles.get("p99"),
            }
        )
    return curves, bars


def load_lines(open_points: list[Point]) -> dict[str, dict[str, dict[str, Any]]]:
    """Open-model points: per scenario and cell, p99 against the achieved rate."""
    lines: dict[str, dict[str, dict[str, Any]]] = {}
    for p in open_points:
        line = lines.setdefault(p.scenario, {}).setdefault(p.key, {"stack": p.stack, "points": []})
        line["points"].append(
            {
                "offered": p.offered,
                "achieved": p.median,
                "p99_us": p.latency.percentiles_us.get("p99"),
                "shortfall": p.rate_shortfall,
                "client_bound": p.client_bound,
            }
        )
    return lines


def resource_rows(all_points: list[Point]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per cell: the peak repeat's server cores and RSS; per server: the median startup time."""
    resources: dict[str, dict[str, Any]] = {}
    startup: dict[str, dict[str, float]] = {}
    for p in all_points:
        entry = resources.setdefault(p.key, {"key": p.key, "stack": p.stack, "cpu_cores": 0.0, "rss_mb": 0.0})
        for r in p.repeats:
            entry["cpu_cores"] = round(max(entry["cpu_cores"], r.server.cpu_cores), 3)
            entry["rss_mb"] = round(max(entry["rss_mb"], (r.server.rss_peak_bytes or 0) / 2**20), 1)
        startup.setdefault(p.cell.server, {}).setdefault(p.key, p.repeats[0].server.startup_seconds)
    return list(resources.values()), {s: round(statistics.median(v.values()), 3) for s, v in startup.items()}


def chart_data(bundle: Bundle, matrix: Matrix | None = None) -> dict[str, Any]:
    matrix = matrix or load()
    apps = list(matrix.apps)
    found = points(bundle, matrix)
    closed = [p for p in found if not p.offered]
    scenarios = [s for s in matrix.scenarios if any(p.scenario == s for p in closed)]
    latency = {s: latency_rows([p for p in closed if p.scenario == s]) for s in scenarios}
    resources, startup = resource_rows(found)
    return {
        "scenarios": scenarios,
        "baseline": apps[0],
        "ceiling_rps": bundle.calibration.ceiling_rps if bundle.calibration else None,
        "ceiling_scenario": bundle.calibration.scenario if bundle.calibration else None,
        "throughput": {s: throughput_bars([p for p in closed if p.scenario == s], apps) for s in scenarios},
        "overhead": {s: overhead_rows([p for p in closed if p.scenario == s], apps) for s in scenarios},
        "latency_curves": {s: latency[s][0] for s in scenarios},
        "latency_bars": {s: latency[s][1] for s in scenarios},
        "load_curves": load_lines([p for p in found if p.offered]),
        "resources": resources,
        "startup_s": startup,
        "caption": caption(bundle),
    }


def caption(bundle: Bundle) -> str:
    m = bundle.manifest
    machine, config = m.machine, m.config
    when = datetime.fromtimestamp(m.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = "container" if machine.container else "local"
    return (
        f"{machine.cpu_model}, {machine.logical_cpus} CPUs, {machine.memory_bytes / 2**30:.0f} GiB, {machine.os}, "
        f"kernel {machine.kernel}, Python {machine.python} ({where}) | server CPUs {config.server_cpus}, "
        f"load CPUs {config.load_cpus}, {config.users} connections, {config.repeats}×{config.duration:g} s | "
        f"run {m.run_id}, {when}"
    )


# --- drawing ---------------------------------------------------------------------------------------------------------


def _finish(fig: plt.Figure, data: dict[str, Any], out: Path, name: str) -> list[Path]:
    fig.text(0.01, 0.005, data["caption"], fontsize=6.5, color="#555555", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=110)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def draw_throughput(data: dict[str, Any], scenario: str, colours: dict[str, str], out: Path) -> list[Path]:
    groups = data["throughput"][scenario]
    width = 0.8 / max(len(bars) for bars in groups.values())
    fig, ax = plt.subplots(figsize=(11, 5.5))
    seen: dict[str, str] = {}
    any_bound = False
    for g, bars in enumerate(groups.values()):
        for i, bar in enumerate(bars):
            x = g + (i - (len(bars) - 1) / 2) * width
            c = colour(colours, bar["stack"])
            ax.bar(
                x, bar["median"], width * 0.92, color=c, edgecolor="black" if bar["client_bound"] else c,
                hatch=CLIENT_BOUND_HATCH if bar["client_bound"] else None, linewidth=0.6,
                yerr=[[bar["median"] - bar["min"]], [bar["max"] - bar["median"]]], capsize=2, ecolor="#333333",
            )  # fmt: skip
            ax.annotate(f"{bar['median'] / 1000:.1f}k", (x, bar["max"]), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)  # fmt: skip
            seen.setdefault(bar["stack"], c)
            any_bound |= bar["client_bound"]
    ax.set_xticks(range(len(groups)), [f"{app}" for app in groups])
    ax.set_ylabel("requests/s (correct answers; median, bars = min–max of repeats)")
    ax.set_title(f"Throughput — {scenario}")
    handles = [Patch(color=c, label=name) for name, c in seen.items()]
    if any_bound:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=CLIENT_BOUND_HATCH, label="client-bound"))
    if data["ceiling_rps"]:
        label = f"load generator ceiling ({data['ceiling_scenario']} calibration): {data['ceiling_rps'] / 1000:.1f}k"
        handles.append(ax.axhline(data["ceiling_rps"], color="#d62728", linestyle="--", linewidth=1, label=label))
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper right", framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, max(data["ceiling_rps"] or 0, *(b["max"] for bars in groups.values() for b in bars)) * 1.18)
    return _finish(fig, data, out, f"throughput-{scenario}")


def draw_overhead(data: dict[str, Any], scenario: str, matrix: Matrix, out: Path) -> list[Path]:
    rows, baseline, colours = data["overhead"][scenario], data["baseline"], palette(matrix)
    apps = [a for a in matrix.apps if any(r.get(a) for r in rows)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    width = 0.8 / len(apps)
    for i, app in enumerate(apps):
        xs = [n + (i - (len(apps) - 1) / 2) * width for n in range(len(rows))]
        alpha = app_alpha(matrix, app)
        left.bar(xs, [r.get(app) or 0 for r in rows], width * 0.92, label=app, alpha=alpha,
                 color=[colour(colours, r["stack"]) for r in rows], edgecolor="black", linewidth=0.4)  # fmt: skip
        right.bar(xs, [r.get(f"{app}_pct_of_{baseline}") or 0 for r in rows], width * 0.92, label=app, alpha=alpha,
                  color=[colour(colours, r["stack"]) for r in rows], edgecolor="black", linewidth=0.4)  # fmt: skip
        for x, r in zip(xs, rows, strict=True):
            pct = r.get(f"{app}_pct_of_{baseline}")
            if pct is not None:
                right.text(x, pct, f"{pct:.0f}%", ha="center", va="bottom", fontsize=6.5)
    for ax in (left, right):
        ax.set_xticks(range(len(rows)), [r["stack"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, title="app (bar shade)", title_fontsize=7)
    left.set_ylabel("requests/s (median)")
    left.set_title(f"Framework overhead — {scenario}: RPS")
    right.set_ylabel(f"% of the {baseline} app's RPS on the same stack")
    right.set_title(f"as % of {baseline}")
    right.axhline(100, color="#333333", linewidth=0.8)
    return _finish(fig, data, out, f"overhead-{scenario}")


def draw_latency(data: dict[str, Any], scenario: str, matrix: Matrix, out: Path) -> list[Path]:
    colours = palette(matrix)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for line in data["latency_curves"][scenario]:
        points = [(nines(p), us / 1000) for p, us in line["curve"] if p < 100]
        ax.plot(*zip(*points, strict=True), app_style(matrix, line["app"]), color=colour(colours, line["stack"]),
                label=f"{line['stack']} · {line['app']}", linewidth=1.3)  # fmt: skip
    ax.set_xticks([nines(p) for p in NINES_TICKS], [f"{p:g}%" for p in NINES_TICKS])
    ax.set_yscale("log")
    ax.set_xlabel("percentile (log scale in nines)")
    ax.set_ylabel("latency, ms (log)")
    ax.set_title(f"Latency percentiles — {scenario} (HDR histograms, µs resolution, repeats merged)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, ncol=2, loc="upper left")
    return _finish(fig, data, out, f"latency-{scenario}")


def draw_latency_bars(data: dict[str, Any], scenario: str, colours: dict[str, str], out: Path) -> list[Path]:
    rows = data["latency_bars"][scenario]
    fig, ax = plt.subplots(figsize=(11, 5))
    xs = range(len(rows))
    cs = [colour(colours, r["stack"]) for r in rows]
    ax.bar([x - 0.2 for x in xs], [r["p50_us"] / 1000 for r in rows], 0.38, color=cs, label="p50")
    ax.bar(
        [x + 0.2 for x in xs], [r["p99_us"] / 1000 for r in rows], 0.38, color=cs, alpha=0.5, hatch="..", label="p99"
    )
    ax.set_xticks(list(xs), [f"{r['stack']} · {r['app']}" for r in rows], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("latency, ms")
    ax.set_title(f"Latency p50 (solid) and p99 (dotted) — {scenario}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, data, out, f"latency-bars-{scenario}")


def draw_load(data: dict[str, Any], scenario: str, colours: dict[str, str], out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for key, line in data["load_curves"][scenario].items():
        points = sorted(line["points"], key=lambda p: p["offered"])
        c = colour(colours, line["stack"])
        ax.plot([p["achieved"] for p in points], [p["p99_us"] / 1000 for p in points], "o-", color=c, label=key)
        for p in points:
            if p["shortfall"]:
                ax.annotate("short of offered", (p["achieved"], p["p99_us"] / 1000), fontsize=6, color="#d62728")
    ax.set_yscale("log")
    ax.set_xlabel("achieved requests/s (open model)")
    ax.set_ylabel("p99 latency, ms (log; from each request's scheduled time)")
    ax.set_title(f"Latency vs load — {scenario}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _finish(fig, data, out, f"latency-vs-load-{scenario}")


def draw_resources(data: dict[str, Any], colours: dict[str, str], out: Path) -> list[Path]:
    rows = data["resources"]
    fig, (cpu, rss, start) = plt.subplots(1, 3, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 3, 1.4]})
    cs = [colour(colours, r["stack"]) for r in rows]
    labels = [r["key"] for r in rows]
    cpu.barh(labels, [r["cpu_cores"] for r in rows], color=cs)
    cpu.set_xlabel("server CPU, cores busy (peak repeat)")
    rss.barh(labels, [r["rss_mb"] for r in rows], color=cs)
    rss.set_xlabel("server RSS, MiB (peak, all processes)")
    rss.set_yticks(range(len(labels)), [""] * len(labels))
    for ax in (cpu, rss):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="y", labelsize=6.5)
    servers = list(data["startup_s"])
    start.bar(servers, [data["startup_s"][s] for s in servers], color="#7f7f7f")
    start.set_ylabel("startup to first correct answer, s (median)")
    start.tick_params(axis="x", rotation=30)
    fig.suptitle("Server resources during load, and startup time")
    return _finish(fig, data, out, "resources")


def render(bundle: Bundle, out: Path | None = None, matrix: Matrix | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Draw every chart the bundle has data for. Returns the chart data and the files written."""
    matrix = matrix or load()
    data = chart_data(bundle, matrix)
    out = out or bundle.root / "charts"
    out.mkdir(parents=True, exist_ok=True)
    colours = palette(matrix)
    files: list[Path] = []
    for scenario in data["scenarios"]:
        files += draw_throughput(data, scenario, colours, out)
        if data["overhead"][scenario]:
            files += draw_overhead(data, scenario, matrix, out)
        files += draw_latency(data, scenario, matrix, out)
        files += draw_latency_bars(data, scenario, colours, out)
    for scenario in data["load_curves"]:
        files += draw_load(data, scenario, colours, out)
    if data["resources"]:
        files += draw_resources(data, colours, out)
    return data, files


def main(path: Path) -> int:
    """python -m lab plot BUNDLE: redraw the charts, report.html and summary.md from the bundle on disk."""
    from lab import report

    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        print(f"asgi-bench-lab: error: {exc}", file=sys.stderr)
        return 2
    data, files = render(bundle)
    pages = report.write(bundle, data, files)
    for p in [*files, *pages]:
        print(p)
    return 0
