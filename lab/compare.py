"""Compare two result bundles, e.g. the same preset on two machines or on two days: python -m lab compare A B

What a reader needs to know when reproducing: for every conclusion A states (each comparison of lab/stats.py),
whether B says the same (held), the opposite (flipped), or that the difference is inside B's noise (became
indistinguishable); how well the two rank the cells (Kendall's tau, per scenario); and for every cell in both, the
RPS ratio B/A, raw and normalized by how fast the two runs' server CPUs ran, so that a faster machine is not mistaken
for a faster server: the mean of the speedometer's samples over every throughput window when both runs have them
(lab/speedometer.py: thousands of samples, taken while measuring), else the speed index (the fixed CPU workload each
run times on its server CPUs a few times). Writes compare.md, compare.csv and a chart per scenario.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scipy import stats as scipy_stats

from core.host import atomic_write
from lab import findings
from lab.bundle import Bundle, BundleError, load_bundle
from lab.report import key_packages
from lab.results import Point, closed, noise, points, window_speed

FIELDS = ["scenario", "key", "offered_rps", "rps_a", "rps_b", "rps_ratio", "rps_ratio_normalized", "p99_us_a",
          "p99_us_b", "p99_ratio", "server_cpus_us_a", "server_cpus_us_b", "limit_a", "limit_b"]  # fmt: skip


def _ratio(b: float | None, a: float | None) -> float | None:
    return round(b / a, 3) if a and b is not None else None


def fingerprint_line(bundle: Bundle, during: tuple[float, int] | None) -> str:
    """The bundle's machine, CPU sets and speed (`during`: results.window_speed of its points)."""
    m = bundle.manifest.machine
    speed = bundle.manifest.speed
    windows = ""
    if during:
        windows = f", server CPU speed in its windows {during[0]:,.0f} inserts/CPU-s ({during[1]:,} samples)"
    return (
        f"{bundle.run_id}: {m.cpu_model}, {m.logical_cpus} CPUs, {m.memory_bytes / 2**30:.0f} GiB, {m.os}, "
        f"kernel {m.kernel}, Python {m.python}, server CPUs {bundle.manifest.config.server_cpus}, "
        f"load CPUs {bundle.manifest.config.load_cpus}, machine {m.machine_id}"
        + (
            f", speed index {speed.server_ops:,.0f} ops/s (median of {len(speed.server_samples)}: "
            f"{min(speed.server_samples):,.0f}–{max(speed.server_samples):,.0f})"
            if speed
            else ""
        )
        + windows
    )


def speed_ratio(
    a: Bundle, b: Bundle, wa: tuple[float, int] | None, wb: tuple[float, int] | None
) -> tuple[float, str] | None:
    """How much faster B's server CPUs ran than A's, and by which measure: during the throughput windows (`wa`, `wb`:
    results.window_speed, the speedometer) when both runs have it, else the speed index."""
    if wa and wb:
        return wb[0] / wa[0], "server CPU speed in the throughput windows"
    if a.manifest.speed and b.manifest.speed and a.manifest.speed.server_ops:
        return b.manifest.speed.server_ops / a.manifest.speed.server_ops, "speed index"
    return None


@dataclass(frozen=True)
class Conclusion:
    scenario: str
    role: str
    cells: tuple[str, str]
    said_a: str
    said_b: str
    status: str  # held, flipped, became indistinguishable, became significant, indistinguishable in both


def conclusions(a: list[Point], b: list[Point]) -> list[Conclusion]:
    """Each comparison stated in A or B, and what became of it in the other."""
    in_b = {(c.scenario, c.a, c.b): c for c in findings.verdicts(b)}
    noise_a, noise_b = noise(a), noise(b)
    out = []
    for ca in findings.verdicts(a):
        cb = in_b.get((ca.scenario, ca.a, ca.b))
        if cb is None:
            continue
        if ca.significant and cb.significant:
            status = "held" if ca.faster == cb.faster else "flipped"
        elif ca.significant:
            status = "became indistinguishable"
        elif cb.significant:
            status = "became significant"
        else:
            status = "indistinguishable in both"
        out.append(
            Conclusion(
                ca.scenario,
                ca.role,
                (ca.a, ca.b),
                findings.verdict_text(ca, a, noise_a),
                findings.verdict_text(cb, b, noise_b),
                status,
            )
        )
    return out


def rank_agreement(a: list[Point], b: list[Point], scenario: str) -> tuple[float | None, int]:
    """Kendall's tau between the two bundles' medians of the cells both have (1 = the same order)."""
    ma = {p.key: p.median for p in closed(a, scenario)}
    mb = {p.key: p.median for p in closed(b, scenario)}
    keys = sorted(ma.keys() & mb.keys())
    if len(keys) < 2:
        return None, len(keys)
    tau = scipy_stats.kendalltau([ma[k] for k in keys], [mb[k] for k in keys]).statistic
    return (round(float(tau), 3) if not math.isnan(tau) else None), len(keys)


def compare(a: Bundle, b: Bundle) -> dict[str, Any]:
    pa, pb = points(a), points(b)
    wa, wb = window_speed(pa), window_speed(pb)
    by_b = {(p.key, p.scenario, p.offered): p for p in pb if p.repeats}
    measured = speed_ratio(a, b, wa, wb)
    speed = measured[0] if measured else None
    rows = []
    for p in pa:
        q = by_b.get((p.key, p.scenario, p.offered))
        if q is None or not p.repeats:
            continue
        ratio = _ratio(q.median, p.median)
        rows.append(
            {
                "scenario": p.scenario, "key": p.key, "offered_rps": p.offered or None, "rps_a": p.median,
                "rps_b": q.median, "rps_ratio": ratio,
                "rps_ratio_normalized": round(ratio / speed, 3) if ratio is not None and speed else None,
                "p99_us_a": p.latency.percentiles_us.get("p99"), "p99_us_b": q.latency.percentiles_us.get("p99"),
                "p99_ratio": _ratio(q.latency.percentiles_us.get("p99"), p.latency.percentiles_us.get("p99")),
                "server_cpus_us_a": p.server_cpus_us, "server_cpus_us_b": q.server_cpus_us,
                "limit_a": p.cpu_limit, "limit_b": q.cpu_limit,
            }
        )  # fmt: skip
    warnings = []
    keys_a = {(p.key, p.scenario, p.offered) for p in pa if p.repeats}
    for label, only in (("A", keys_a - by_b.keys()), ("B", by_b.keys() - keys_a)):
        for key, scenario, _ in sorted(k for k in only if not k[2]):
            warnings.append(f"only in {label}: {key} {scenario}")
    for scenario in sorted({s for _, s, offered in keys_a | by_b.keys() if offered}):
        rates_a = sorted({o for _, s, o in keys_a if s == scenario and o})
        rates_b = sorted({o for _, s, o in by_b if s == scenario and o})
        if rates_a != rates_b:  # each run chooses its sweep's rates from its own figures
            shared = sorted(set(rates_a) & set(rates_b))
            warnings.append(
                f"sweep rates differ in {scenario}: A {', '.join(f'{r:g}' for r in rates_a) or 'none'}; B "
                f"{', '.join(f'{r:g}' for r in rates_b) or 'none'}; cells compared at "
                + (", ".join(f"{r:g}" for r in shared) if shared else "no common rate")
            )
    va, vb = a.manifest.versions, b.manifest.versions
    for package in (*key_packages(), "python"):
        left = a.manifest.machine.python if package == "python" else va.get(package)
        right = b.manifest.machine.python if package == "python" else vb.get(package)
        if left != right:
            warnings.append(f"version differs: {package} {left} (A) vs {right} (B)")
    scenarios = sorted({r["scenario"] for r in rows if not r["offered_rps"]})
    return {
        "a": fingerprint_line(a, wa),
        "b": fingerprint_line(b, wb),
        "speed_ratio": round(speed, 3) if speed else None,
        "speed_measure": measured[1] if measured else None,
        "rows": rows,
        "conclusions": conclusions(pa, pb),
        "ranks": {s: rank_agreement(pa, pb, s) for s in scenarios},
        "warnings": warnings,
    }


def write(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(result["rows"])
    atomic_write(out / "compare.csv", table.getvalue())
    files.append(out / "compare.csv")
    said: list[Conclusion] = result["conclusions"]
    counts = {s: sum(c.status == s for c in said) for s in dict.fromkeys(c.status for c in said)}
    md = ["# Comparison", "", f"- A: {result['a']}", f"- B: {result['b']}"]
    if result["speed_ratio"]:
        md.append(f"- speed B/A ({result['speed_measure']}): {result['speed_ratio']}")
    md += ["", "## Conclusions", ""]
    md += [
        f"Of {len(said)} comparisons: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "." if said else "None."
    ]
    md += ["", "| scenario | kind | A says | B says | |", "|---|---|---|---|---|"]
    md += [f"| {c.scenario} | {c.role} | {c.said_a} | {c.said_b} | {c.status} |" for c in said]
    md += ["", "## Rank agreement of the cells (Kendall's tau; 1 = the same order)", ""]
    for scenario, (tau, n) in result["ranks"].items():
        md.append(f"- {scenario}: tau {tau if tau is not None else 'n/a'} over {n} cells")
    md += ["", "## Warnings", ""] + ([f"- {w}" for w in result["warnings"]] or ["None."])
    md += ["", "## Cells in both", "", "| scenario | cell | RPS A | RPS B | B/A | B/A ÷ speed | p99 µs A | p99 µs B "
           "| limit A | limit B |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for r in result["rows"]:
        offered = f" @{r['offered_rps']:g}" if r["offered_rps"] else ""
        md.append(
            f"| {r['scenario']}{offered} | {r['key']} | {r['rps_a']:,.0f} | {r['rps_b']:,.0f} | {r['rps_ratio']} "
            f"| {r['rps_ratio_normalized']} | {r['p99_us_a']} | {r['p99_us_b']} | {r['limit_a']} | {r['limit_b']} |"
        )
    atomic_write(out / "compare.md", "\n".join(md) + "\n")
    files.append(out / "compare.md")
    for scenario in result["ranks"]:
        files += draw(result, scenario, out)
    return files


def draw(result: dict[str, Any], scenario: str, out: Path) -> list[Path]:
    rows = [r for r in result["rows"] if r["scenario"] == scenario and not r["offered_rps"]]
    fig, (ax, ratio) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], [r["rps_a"] for r in rows], 0.4, label="A", color="#4c72b0")
    ax.barh([y + 0.2 for y in ys], [r["rps_b"] for r in rows], 0.4, label="B", color="#dd8452")
    ax.set_yticks(list(ys), [r["key"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("requests/s (median)")
    ax.legend()
    ratio.barh(list(ys), [r["rps_ratio"] or 0 for r in rows], color="#8c8c8c", label="RPS B/A")
    if result["speed_ratio"]:
        ratio.plot([r["rps_ratio_normalized"] or 0 for r in rows], list(ys), "o", color="#c44e52",
                   label="B/A ÷ speed B/A")  # fmt: skip
    ratio.axvline(1, color="black", linewidth=0.8)
    ratio.set_yticks(list(ys), [""] * len(rows))
    ratio.invert_yaxis()
    ratio.set_xlabel("ratio B / A")
    ratio.legend(fontsize=8)
    tau, n = result["ranks"][scenario]
    fig.suptitle(f"{scenario}: Kendall's tau {tau} over {n} cells\nA = {result['a'][:100]}\nB = {result['b'][:100]}",
                 fontsize=8)  # fmt: skip
    fig.tight_layout()
    files = []
    for suffix in ("png", "svg"):
        fig.savefig(out / f"compare-{scenario}.{suffix}", dpi=110)
        files.append(out / f"compare-{scenario}.{suffix}")
    plt.close(fig)
    return files


def main(path_a: Path, path_b: Path, out: Path | None = None) -> int:
    """python -m lab compare A B [--out DIR]"""
    try:
        a, b = load_bundle(path_a), load_bundle(path_b)
    except BundleError as exc:
        print(f"asgi-bench-lab: error: {exc}", file=sys.stderr)
        return 2
    result = compare(a, b)
    out = out or path_a.parent / f"compare-{a.run_id}-vs-{b.run_id}"
    for path in write(result, out):
        print(path)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
