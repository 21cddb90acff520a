"""Compare two result bundles, e.g. the same preset on two machines: python -m lab compare A B

For every cell x scenario in both: absolute RPS, RPS per server core, the ratio B/A of each, and the p99 latency
ratio; with both machines' fingerprints in the header, and warnings for cells in only one bundle and for package
versions that differ. Writes compare.md, compare.csv and a chart per scenario.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from core.host import atomic_write
from lab.bundle import Bundle, BundleError, load_bundle
from lab.report import key_packages
from lab.results import summarize
from servers.matrix import load

FIELDS = ["scenario", "key", "offered_rps", "rps_a", "rps_b", "rps_ratio", "rps_per_core_a", "rps_per_core_b",
          "per_core_ratio", "p99_us_a", "p99_us_b", "p99_ratio", "client_bound_a", "client_bound_b"]  # fmt: skip


def _ratio(b: float | None, a: float | None) -> float | None:
    return round(b / a, 3) if a and b is not None else None


def per_core(row: dict[str, Any]) -> float | None:
    cores = row.get("server_cpu_cores")
    return round(row["rps_median"] / cores, 1) if cores else None


def fingerprint_line(bundle: Bundle) -> str:
    m = bundle.manifest.machine
    return (
        f"{bundle.run_id}: {m.cpu_model}, {m.logical_cpus} CPUs, {m.memory_bytes / 2**30:.0f} GiB, {m.os}, "
        f"kernel {m.kernel}, Python {m.python}, server CPUs {bundle.manifest.config.server_cpus}, "
        f"load CPUs {bundle.manifest.config.load_cpus}, machine {m.machine_id}"
    )


def compare(a: Bundle, b: Bundle) -> dict[str, Any]:
    rows_a = {(r["key"], r["scenario"], r.get("offered_rps")): r for r in summarize(a) if r["status"] == "ok"}
    rows_b = {(r["key"], r["scenario"], r.get("offered_rps")): r for r in summarize(b) if r["status"] == "ok"}
    rows = []
    for point in sorted(rows_a.keys() & rows_b.keys(), key=lambda p: (p[1], p[0], p[2] or 0)):
        ra, rb = rows_a[point], rows_b[point]
        rows.append(
            {
                "scenario": point[1],
                "key": point[0],
                "offered_rps": point[2],
                "rps_a": ra["rps_median"],
                "rps_b": rb["rps_median"],
                "rps_ratio": _ratio(rb["rps_median"], ra["rps_median"]),
                "rps_per_core_a": per_core(ra),
                "rps_per_core_b": per_core(rb),
                "per_core_ratio": _ratio(per_core(rb), per_core(ra)),
                "p99_us_a": ra["p99_us"],
                "p99_us_b": rb["p99_us"],
                "p99_ratio": _ratio(rb["p99_us"], ra["p99_us"]),
                "client_bound_a": ra["client_bound"],
                "client_bound_b": rb["client_bound"],
            }
        )
    warnings = []
    for label, only in (("A", rows_a.keys() - rows_b.keys()), ("B", rows_b.keys() - rows_a.keys())):
        for key, scenario, offered in sorted(only, key=str):
            warnings.append(f"only in {label}: {key} {scenario}" + (f" @{offered:g}" if offered else ""))
    va, vb = a.manifest.versions, b.manifest.versions
    for package in (*key_packages(), "python"):
        left = a.manifest.machine.python if package == "python" else va.get(package)
        right = b.manifest.machine.python if package == "python" else vb.get(package)
        if left != right:
            warnings.append(f"version differs: {package} {left} (A) vs {right} (B)")
    bound = [f"{r['key']} {r['scenario']}" for r in rows if r["client_bound_a"] or r["client_bound_b"]]
    if bound:
        warnings.append(f"client-bound in A or B (ratios there compare load generators too): {', '.join(bound)}")
    return {"a": fingerprint_line(a), "b": fingerprint_line(b), "rows": rows, "warnings": warnings}


def ordering_agrees(result: dict[str, Any], scenario: str) -> tuple[list[str], list[str]]:
    """The cells of one scenario ranked by RPS in A and in B."""
    rows = [r for r in result["rows"] if r["scenario"] == scenario and not r["offered_rps"]]
    return (
        [r["key"] for r in sorted(rows, key=lambda r: -r["rps_a"])],
        [r["key"] for r in sorted(rows, key=lambda r: -r["rps_b"])],
    )


def conclusions(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Coarser claims a reader takes away, each checked in A and in B: which server is fastest for each app, and
    whether raw > Starlette > FastAPI holds on each server/loop stack."""
    rows = [r for r in result["rows"] if not r["offered_rps"]]
    claims = []
    for scenario in sorted({r["scenario"] for r in rows}):
        for app in load().apps:
            mine = [r for r in rows if r["scenario"] == scenario and r["key"].endswith(f"-{app}")]
            if not mine:
                continue
            best = {}
            for side in ("a", "b"):
                per_server: dict[str, float] = {}
                for r in mine:
                    server = r["key"].split("-")[0]
                    per_server[server] = max(per_server.get(server, 0.0), r[f"rps_{side}"])
                best[side] = sorted(per_server, key=lambda s: -per_server[s])
            claims.append({"claim": f"{scenario}, {app} app: server order by best RPS", "a": best["a"], "b": best["b"]})
        stacks = sorted({r["key"].rsplit("-", 1)[0] for r in rows if r["scenario"] == scenario})
        for stack in stacks:
            by_app = {
                r["key"].rsplit("-", 1)[1]: r
                for r in rows
                if r["scenario"] == scenario and r["key"].startswith(stack + "-")
            }
            if len(by_app) < 2:
                continue
            order = {side: sorted(by_app, key=lambda a: -by_app[a][f"rps_{side}"]) for side in ("a", "b")}
            claims.append({"claim": f"{scenario}, {stack}: app order", "a": order["a"], "b": order["b"]})
    for c in claims:
        c["held"] = c["a"] == c["b"]
    return claims


def write(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(result["rows"])
    atomic_write(out / "compare.csv", table.getvalue())
    files.append(out / "compare.csv")
    md = ["# Comparison", "", f"- A: {result['a']}", f"- B: {result['b']}", "", "## Warnings", ""]
    md += [f"- {w}" for w in result["warnings"]] or ["None."]
    md += ["", "## Cells in both", "", "| scenario | cell | RPS A | RPS B | B/A | RPS/core A | RPS/core B | B/A "
           "| p99 µs A | p99 µs B | B/A |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["rows"]:
        flag = " (client-bound)" if r["client_bound_a"] or r["client_bound_b"] else ""
        md.append(
            f"| {r['scenario']} | {r['key']}{flag} | {r['rps_a']:,.0f} | {r['rps_b']:,.0f} | {r['rps_ratio']} "
            f"| {r['rps_per_core_a']} | {r['rps_per_core_b']} | {r['per_core_ratio']} | {r['p99_us_a']} "
            f"| {r['p99_us_b']} | {r['p99_ratio']} |"
        )
    scenarios = sorted({r["scenario"] for r in result["rows"]})
    claims = conclusions(result)
    md += ["", f"## Conclusions that held ({sum(c['held'] for c in claims)} of {len(claims)})", ""]
    md += ["| claim | A | B | held |", "|---|---|---|---|"]
    for c in claims:
        md.append(f"| {c['claim']} | {' > '.join(c['a'])} | {' > '.join(c['b'])} | {'yes' if c['held'] else 'no'} |")
    md += ["", "## Ranking of every cell by RPS", ""]
    for scenario in scenarios:
        in_a, in_b = ordering_agrees(result, scenario)
        md.append(f"- {scenario}: {'same order in A and B' if in_a == in_b else 'order differs'}")
        md.append(f"  - A: {' > '.join(in_a)}")
        md.append(f"  - B: {' > '.join(in_b)}")
    atomic_write(out / "compare.md", "\n".join(md) + "\n")
    files.append(out / "compare.md")
    for scenario in scenarios:
        rows = [r for r in result["rows"] if r["scenario"] == scenario and not r["offered_rps"]]
        if not rows:
            continue
        fig, (ax, ratio) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
        ys = range(len(rows))
        ax.barh([y - 0.2 for y in ys], [r["rps_a"] for r in rows], 0.4, label="A", color="#4c72b0")
        ax.barh([y + 0.2 for y in ys], [r["rps_b"] for r in rows], 0.4, label="B", color="#dd8452")
        ax.set_yticks(list(ys), [r["key"] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("requests/s (median)")
        ax.legend()
        ratio.barh(list(ys), [r["rps_ratio"] or 0 for r in rows], color="#8c8c8c", label="RPS B/A")
        ratio.plot([r["per_core_ratio"] or 0 for r in rows], list(ys), "o", color="#c44e52", label="RPS/core B/A")
        ratio.axvline(1, color="black", linewidth=0.8)
        ratio.set_yticks(list(ys), [""] * len(rows))
        ratio.invert_yaxis()
        ratio.set_xlabel("ratio B / A")
        ratio.legend(fontsize=8)
        fig.suptitle(f"{scenario}: A = {result['a'][:90]}\nB = {result['b'][:90]}", fontsize=8)
        fig.tight_layout()
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
