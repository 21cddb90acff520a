"""Charts from a result bundle (never from a re-run): throughput, overhead, latency and cost at equal load, resources.

    python -m lab plot results/<run-id>        # charts/*.png|svg, report.html, summary.md

chart_data() computes every plotted number from the bundle; render() only draws it, so tests check the numbers.
Colours belong to a server/loop/http stack in matrix order, the same in every chart and every run; line styles and
shades belong to an app in matrix order. What limited a bar is drawn on it: server-limited bars are plain,
client-limited ones hatched with wrk's figure (the referee) marked beside them, unclear ones dotted.
"""

from __future__ import annotations

import io
import math
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from PIL import Image

from lab import stats
from lab.bundle import Bundle, BundleError, load_bundle
from lab.results import Point, closed, noise, points
from servers.matrix import Matrix, load

LINE_STYLES = ("-", "--", ":", "-.")
NINES_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)
HATCHES = {"client": "///", "unclear": "...", "server": None, "offered": None}
LIMIT_LABELS = {
    "client": "client-limited (Locust was the limit; ◆ = wrk on the same server)",
    "unclear": "unclear (both sides near saturation, or the referee out of CPU)",
}
SERVER_COLOURMAPS = ("Blues", "Greens", "Oranges", "Purples", "Reds", "Greys")
PERCENTILES = ("p50", "p99", "p99.9")


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


def throughput_bars(mine: list[Point], apps: list[str], scenario_noise: stats.Noise) -> dict[str, list[dict]]:
    """Per app (matrix order), one bar per cell: median RPS with its 95% interval, min and max, what limited it."""
    by_app: dict[str, list[dict[str, Any]]] = {}
    for p in mine:
        low, high = p.interval(scenario_noise)
        limit = p.verdict(scenario_noise)[0]
        by_app.setdefault(p.cell.app, []).append(
            {
                "key": p.key, "stack": p.stack, "app": p.cell.app, "median": p.level(scenario_noise),
                "measured_median": p.median,
                "ci_low": round(low, 1), "ci_high": round(high, 1), "min": round(min(p.rps), 1),
                "max": round(max(p.rps), 1), "repeats": len(p.repeats), "failed": len(p.failed), "limit": limit,
                "referee_rps": p.referee_rps,
            }
        )  # fmt: skip
    return {app: by_app[app] for app in apps if app in by_app}


def overhead_rows(mine: list[Point], apps: list[str], scenario_noise: stats.Noise | None) -> list[dict[str, Any]]:
    """Per stack: each app's median RPS (at the run's mean machine speed, as the comparisons), and as % of the
    baseline app (the matrix's first) on the same stack."""
    baseline = apps[0]
    by_stack: dict[str, dict[str, float]] = {}
    for p in mine:
        by_stack.setdefault(p.stack, {})[p.cell.app] = p.level(scenario_noise)
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


def saturation_curves(mine: list[Point]) -> list[dict[str, Any]]:
    """Closed-model percentile curves: latency at saturation, which restates throughput (connections / RPS)."""
    return [{"key": p.key, "stack": p.stack, "app": p.cell.app, "curve": p.latency.curve_us} for p in mine]


def sweep_lines(found: list[Point], scenario: str) -> dict[str, dict[str, Any]]:
    """Per cell: at each offered rate, the latency percentiles from the slot, the server's CPU per answer, and
    whether the rate was served (the first rate it was not is the knee)."""
    lines: dict[str, dict[str, Any]] = {}
    for p in found:
        if p.scenario != scenario or not p.offered or not p.repeats:
            continue
        line = lines.setdefault(p.key, {"stack": p.stack, "app": p.cell.app, "points": []})
        percentiles = p.latency.percentiles_us
        line["points"].append(
            {
                "offered": p.offered, "achieved": p.median, "shortfall": p.rate_shortfall,
                **{name: percentiles.get(name) for name in PERCENTILES},
                "server_cpus_us": p.server_cpus_us, "server_us": p.server_us, "client_us": p.client_us,
                "late_p99_us": p.lateness.percentiles_us.get("p99") if p.lateness else None,
            }
        )  # fmt: skip
    for line in lines.values():
        line["points"].sort(key=lambda q: q["offered"])
        line["knee"] = next((q["offered"] for q in line["points"] if q["shortfall"]), None)
    return lines


def common_rate(found: list[Point], scenario: str, rates: list[float]) -> float | None:
    """The highest common rate every swept cell served: the rate at which to compare latency curves."""
    swept = {p.key for p in found if p.scenario == scenario and p.offered}
    for rate in sorted(rates, reverse=True):
        served = {p.key for p in found if p.scenario == scenario and p.offered == rate and p.repeats}
        served -= {p.key for p in found if p.scenario == scenario and p.offered == rate and p.rate_shortfall}
        if swept and served == swept:
            return rate
    return None


def at_rate(found: list[Point], scenario: str, rate: float) -> list[dict[str, Any]]:
    return [
        {
            "key": p.key,
            "stack": p.stack,
            "app": p.cell.app,
            "curve": p.latency.curve_us,
            "p99_us": p.latency.percentiles_us.get("p99"),
            "server_cpus_us": p.server_cpus_us,
        }
        for p in found
        if p.scenario == scenario and p.offered == rate and p.repeats
    ]


def resource_rows(all_points: list[Point]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per cell: the peak repeat's server cores and RSS, and the median server CPU µs per answer in the throughput
    repeats (all scenarios); per server: the median startup time."""
    resources: dict[str, dict[str, Any]] = {}
    startup: dict[str, dict[str, float]] = {}
    for p in all_points:
        entry = resources.setdefault(p.key, {"key": p.key, "stack": p.stack, "cpu_cores": 0.0, "rss_mb": 0.0, "us": []})
        for r in p.repeats:
            assert r.server is not None
            entry["cpu_cores"] = round(max(entry["cpu_cores"], r.server.cpu_cores), 3)
            entry["rss_mb"] = round(max(entry["rss_mb"], (r.server.rss_peak_bytes or 0) / 2**20), 1)
            startup.setdefault(p.cell.server, {}).setdefault(p.key, r.server.startup_seconds)
        if not p.offered and p.server_cpus_us:
            entry["us"].append(p.server_cpus_us)
    rows = [
        {
            **{k: v for k, v in e.items() if k != "us"},
            "server_cpus_us": round(statistics.median(e["us"]), 1) if e["us"] else None,
        }
        for e in resources.values()
    ]
    return rows, {s: round(statistics.median(v.values()), 3) for s, v in startup.items()}


def median_or_none(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def chart_data(bundle: Bundle, matrix: Matrix | None = None) -> dict[str, Any]:
    matrix = matrix or load()
    apps = list(matrix.apps)
    found = points(bundle, matrix)
    noises = noise(found)
    scenarios = [s for s in matrix.scenarios if closed(found, s)]
    swept = [s for s in matrix.scenarios if any(p.scenario == s and p.offered and p.repeats for p in found)]
    sweep = bundle.manifest.sweep
    compare_at = {s: common_rate(found, s, sweep[s].common if s in sweep else []) for s in swept}
    calibration = bundle.calibration
    ceilings = {}
    for s in scenarios:
        point = calibration.point(s) if calibration else None
        if point:
            ceilings[s] = {"rps": point.ceiling_rps, "how": point.ceiling}
    resources, startup = resource_rows(found)
    return {
        "scenarios": scenarios,
        "swept": swept,
        "baseline": apps[0],
        "ceilings": ceilings,
        "noise_pct": {s: round(n.percent, 2) for s, n in noises.items() if math.isfinite(n.sd)},
        "noise_fitted": {
            s: "the rounds' drift" + (" and the CPU's speed" if n.beta is not None else "") + " fitted out"
            for s, n in noises.items()
        },
        "throughput": {s: throughput_bars(closed(found, s), apps, noises[s]) for s in scenarios},
        "overhead": {s: overhead_rows(closed(found, s), apps, noises.get(s)) for s in scenarios},
        "saturation": {s: saturation_curves(closed(found, s)) for s in scenarios},
        "sweep": {s: sweep_lines(found, s) for s in swept},
        "sweep_rates": {s: sweep[s].model_dump() for s in swept if s in sweep},
        "compare_at": compare_at,
        "at_rate": {s: at_rate(found, s, r) for s, r in compare_at.items() if r},
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
        f"load CPUs {config.load_cpus} ({config.load_workers} Locust workers), {config.users} connections, "
        f"{config.repeats}+ rounds × {config.duration:g} s | run {m.run_id}, {when}"
    )


# --- drawing ---------------------------------------------------------------------------------------------------------


def _finish(fig: plt.Figure, data: dict[str, Any], out: Path, name: str, top: float = 1.0) -> list[Path]:
    """Caption, layout (the axes below `top`, leaving room for a figure legend above them), PNG and SVG."""
    fig.text(0.01, 0.005, data["caption"], fontsize=6.5, color="#555555", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, top))
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    # 256 colours hold every line and bar of these charts; a third of the size, so reports and bundles stay small
    image = Image.open(png).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(paths[0], optimize=True)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def draw_throughput(data: dict[str, Any], scenario: str, matrix: Matrix, out: Path) -> list[Path]:
    groups, colours = data["throughput"][scenario], palette(matrix)
    width = 0.8 / max(len(bars) for bars in groups.values())
    fig, ax = plt.subplots(figsize=(11, 5.5))
    seen: dict[str, str] = {}
    limits: set[str] = set()
    top = 0.0
    for g, bars in enumerate(groups.values()):
        for i, bar in enumerate(bars):
            x = g + (i - (len(bars) - 1) / 2) * width
            c = colour(colours, bar["stack"])
            hatch = HATCHES.get(bar["limit"])
            ax.bar(
                x, bar["median"], width * 0.92, color=c, edgecolor="black" if hatch else c, hatch=hatch, linewidth=0.6,
            )  # fmt: skip
            # The interval is the adjusted mean's (lab/stats.py), so it is drawn on its own centre: the median of a
            # few adjusted repeats may lie outside it.
            low, high = bar["ci_low"], bar["ci_high"]
            centre = (low * high) ** 0.5
            ax.errorbar(x, centre, yerr=[[centre - low], [high - centre]], fmt="none", capsize=2, ecolor="#333333",
                        linewidth=1.0)  # fmt: skip
            if bar["limit"] == "client" and bar["referee_rps"]:
                ax.plot(x, bar["referee_rps"], marker="D", color="black", markersize=4, zorder=5)
                top = max(top, bar["referee_rps"])
            ax.annotate(f"{bar['median'] / 1000:.1f}k", (x, bar["ci_high"]), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)  # fmt: skip
            seen.setdefault(bar["stack"], c)
            limits.add(bar["limit"])
            top = max(top, bar["ci_high"], bar["max"])
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel("requests/s (correct answers; median at the run's mean speed, bars = 95% interval)", fontsize=8)
    noise_pct = data["noise_pct"].get(scenario)
    ax.set_title(
        f"Throughput — {scenario}"
        + (f" (repeat noise {noise_pct:.1f}%, {data['noise_fitted'][scenario]})" if noise_pct is not None else "")
    )
    handles: list[Any] = [Patch(color=c, label=name) for name, c in seen.items()]
    for limit in ("client", "unclear"):
        if limit in limits:
            handles.append(Patch(facecolor="white", edgecolor="black", hatch=HATCHES[limit], label=LIMIT_LABELS[limit]))
    ceiling = data["ceilings"].get(scenario)
    if ceiling:
        label = f"Locust's ceiling ({ceiling['how']}): {ceiling['rps'] / 1000:.1f}k"
        handles.append(ax.axhline(ceiling["rps"], color="#d62728", linestyle="--", linewidth=1, label=label))
        top = max(top, ceiling["rps"])
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper right", framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, top * 1.25)
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


def percentile_axes(ax: plt.Axes) -> None:
    ax.set_xticks([nines(p) for p in NINES_TICKS], [f"{p:g}%" for p in NINES_TICKS])
    ax.set_yscale("log")
    ax.set_xlabel("percentile (log scale in nines)")
    ax.set_ylabel("latency, ms (log)")
    ax.grid(alpha=0.3, which="both")


def draw_curves(
    data: dict[str, Any], lines: list[dict[str, Any]], matrix: Matrix, out: Path, name: str, title: str
) -> list[Path]:
    colours = palette(matrix)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for line in lines:
        curve = [(nines(p), us / 1000) for p, us in line["curve"] if p < 100]
        if curve:
            ax.plot(*zip(*curve, strict=True), app_style(matrix, line["app"]), color=colour(colours, line["stack"]),
                    label=f"{line['stack']} · {line['app']}", linewidth=1.3)  # fmt: skip
    percentile_axes(ax)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6.5, ncol=2, loc="upper left")
    return _finish(fig, data, out, name)


def draw_sweep(data: dict[str, Any], scenario: str, matrix: Matrix, out: Path) -> list[Path]:
    """Latency from the slot against the offered rate: p50, p99 and p99.9, one line per cell; knee marked."""
    colours, lines = palette(matrix), data["sweep"][scenario]
    fig, axes = plt.subplots(1, len(PERCENTILES), figsize=(15, 6.2), sharex=True, sharey=True)
    for ax, name in zip(axes, PERCENTILES, strict=True):
        for line in lines.values():
            pts = [q for q in line["points"] if q[name]]
            c = colour(colours, line["stack"])
            ax.plot([q["offered"] for q in pts], [q[name] / 1000 for q in pts], app_style(matrix, line["app"]),
                    color=c, linewidth=1.1, label=f"{line['stack']} · {line['app']}")  # fmt: skip
            short = [q for q in pts if q["shortfall"]]
            ax.plot([q["offered"] for q in short], [q[name] / 1000 for q in short], "x", color=c, markersize=6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{name} latency", fontsize=9)
        ax.set_xlabel("offered requests/s (open model, Poisson)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("latency, ms, from each request's scheduled time (log)")
    handles = axes[0].get_legend_handles_labels()[0]
    handles.append(Line2D([], [], marker="x", linestyle="", color="black", label="rate not served (past the knee)"))
    fig.suptitle(f"Latency at equal offered load — {scenario}", y=0.99, fontsize=11)
    fig.legend(handles=handles, fontsize=6.5, ncol=5, loc="upper center", bbox_to_anchor=(0.5, 0.95))
    return _finish(fig, data, out, f"latency-vs-rate-{scenario}", top=0.85)


def draw_cost(data: dict[str, Any], scenario: str, matrix: Matrix, out: Path) -> list[Path]:
    """What each answer costs the server at every rate it served: its CPUs' busy time (interrupts included, the
    network stack's share on loopback) and its own processes' CPU."""
    colours, lines = palette(matrix), data["sweep"][scenario]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), sharex=True)
    for ax, field, label in (
        (axes[0], "server_cpus_us", "server CPUs busy, µs per answer (interrupts included)"),
        (axes[1], "server_us", "server processes' own CPU, µs per answer"),
    ):
        for line in lines.values():
            pts = [q for q in line["points"] if q[field] and not q["shortfall"]]
            ax.plot([q["offered"] for q in pts], [q[field] for q in pts], app_style(matrix, line["app"]), marker="o",
                    markersize=3, color=colour(colours, line["stack"]), linewidth=1.1,
                    label=f"{line['stack']} · {line['app']}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("offered requests/s (open model; rates each cell served)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=6.5, ncol=2)
    fig.suptitle(f"Cost per request at equal load — {scenario} (lower is cheaper)")
    return _finish(fig, data, out, f"cost-vs-rate-{scenario}")


def draw_resources(data: dict[str, Any], matrix: Matrix, out: Path) -> list[Path]:
    rows, colours = data["resources"], palette(matrix)
    fig, (us, cpu, rss, start) = plt.subplots(1, 4, figsize=(16, 5), gridspec_kw={"width_ratios": [3, 3, 3, 1.4]})
    cs = [colour(colours, r["stack"]) for r in rows]
    labels = [r["key"] for r in rows]
    us.barh(labels, [r["server_cpus_us"] or 0 for r in rows], color=cs)
    us.set_xlabel("server CPU µs per answer (throughput repeats, median)")
    cpu.barh(labels, [r["cpu_cores"] for r in rows], color=cs)
    cpu.set_xlabel("server process CPU, cores busy (peak repeat)")
    rss.barh(labels, [r["rss_mb"] for r in rows], color=cs)
    rss.set_xlabel("server RSS, MiB (peak, all processes)")
    for ax in (cpu, rss):
        ax.set_yticks(range(len(labels)), [""] * len(labels))
    for ax in (us, cpu, rss):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="y", labelsize=6.5)
    servers = list(data["startup_s"])
    start.bar(servers, [data["startup_s"][s] for s in servers], color="#7f7f7f")
    start.set_ylabel("startup to first correct answer, s (median)")
    start.tick_params(axis="x", rotation=30)
    fig.suptitle("Server cost and resources during load, and startup time")
    return _finish(fig, data, out, "resources")


def render(bundle: Bundle, out: Path | None = None, matrix: Matrix | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Draw every chart the bundle has data for. Returns the chart data and the files written."""
    matrix = matrix or load()
    data = chart_data(bundle, matrix)
    out = out or bundle.root / "charts"
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for scenario in data["swept"]:
        rate = data["compare_at"].get(scenario)
        if rate:
            title = (f"Latency percentiles at {rate:,.0f} requests/s offered — {scenario}: every cell at the same "
                     "load, from each request's scheduled time")  # fmt: skip
            files += draw_curves(data, data["at_rate"][scenario], matrix, out, f"latency-at-rate-{scenario}", title)
        files += draw_sweep(data, scenario, matrix, out)
        files += draw_cost(data, scenario, matrix, out)
    for scenario in data["scenarios"]:
        files += draw_throughput(data, scenario, matrix, out)
        if data["overhead"][scenario]:
            files += draw_overhead(data, scenario, matrix, out)
        title = (f"At saturation — {scenario}: latency = connections ÷ throughput (closed model); compare latency "
                 "at equal load instead")  # fmt: skip
        files += draw_curves(data, data["saturation"][scenario], matrix, out, f"latency-saturation-{scenario}", title)
    if data["resources"]:
        files += draw_resources(data, matrix, out)
    return data, files


def main(path: Path) -> int:
    """python -m lab plot BUNDLE: summary.csv, the charts, report.html and summary.md again from the repeats on disk
    (as the runner writes them at the end of a run), e.g. after the lab's analysis changed."""
    from lab import report, results

    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        print(f"asgi-bench-lab: error: {exc}", file=sys.stderr)
        return 2
    results.write_summary_csv(bundle)
    data, files = render(bundle)
    pages = report.write(bundle, data, files)
    for p in [bundle.root / "summary.csv", *files, *pages]:
        print(p)
    return 0
