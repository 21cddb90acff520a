"""report.html (self-contained: images inline, no network) and summary.md for a result bundle.

Both lead with what the run says (lab/findings.py): who leads at each common offered rate, then a verdict for every
comparison with its 95% interval; then warnings, the charts, the full table, calibration, and the machine.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.host import atomic_write
from lab import findings
from lab.bundle import Bundle
from lab.results import noise, points, summarize
from lab.stats import Noise
from lab.verdict import REFEREE_ABOVE, REFEREE_SHARE
from servers.matrix import Matrix, load

TOOL_PACKAGES = ("locust", "gevent", "hdrhistogram", "matplotlib", "scipy")


def key_packages(matrix: Matrix | None = None) -> list[str]:
    """The packages a result depends on: every one the matrix names (servers, HTTP parsers, loops, apps), then the
    lab's own measuring and drawing tools."""
    matrix = matrix or load()
    names = [
        p for s in matrix.servers.values() for p in (*s.packages, *(q for h in s.http_packages.values() for q in h))
    ]
    names += [p for loop in matrix.loops.values() for p in loop.packages]
    names += [p for app in matrix.apps.values() for p in app.packages]
    return list(dict.fromkeys([*names, *TOOL_PACKAGES]))


TABLE_COLUMNS = [
    ("scenario", "scenario"), ("key", "cell"), ("offered_rps", "offered RPS"), ("rps_median", "RPS (median)"),
    ("rps_at_mean_speed", "at mean speed"),
    ("rps_ci_low", "95% CI low"), ("rps_ci_high", "95% CI high"), ("rps_min", "min"), ("rps_max", "max"),
    ("limit", "limit"), ("referee_rps", "wrk RPS"), ("lab_vs_referee", "Locust ÷ wrk"), ("p50_us", "p50 µs"),
    ("p99_us", "p99 µs"), ("p99_9_us", "p99.9 µs"), ("send_late_p99_us", "send late p99 µs"), ("errors", "errors"),
    ("server_cpus_us_per_req", "server CPU µs/req"), ("client_us_per_req", "client µs/req"),
    ("projected_rps", "projected capacity"), ("server_rss_mb", "RSS MiB"), ("startup_s", "startup s"),
    ("repeats", "repeats"), ("repeats_failed", "failed"), ("unsteady", "unsteady"), ("disturbed", "re-run"),
    ("status", "status"),
]  # fmt: skip


def warnings(bundle: Bundle, rows: list[dict[str, Any]]) -> list[str]:
    m = bundle.manifest
    out = []
    if m.status != "complete":
        note = m.parts[-1].note if m.parts else None
        out.append(f"The run is {m.status}{f' ({note})' if note else ''}: the results below are partial.")
    for limit, meaning in (
        ("client", "the load generator, not the server, was the limit (wrk's figure is beside each)"),
        ("unclear", "both sides were near saturation, or the referee ran out of CPU: read them as approximate"),
    ):
        hit = [f"{r['key']} {r['scenario']}" for r in rows if r.get("limit") == limit and not r.get("offered_rps")]
        if hit:
            out.append(f"{len(hit)} result(s) {limit}-limited — {meaning}: {', '.join(hit)}.")
    for f in bundle.failures:
        out.append(f"FAILED {f.key} {f.scenario or ''} during {f.phase}: {f.error}")
    for r in rows:
        label = f"{r['key']} {r['scenario']}" + (f" at {r['offered_rps']:g} RPS" if r.get("offered_rps") else "")
        if r.get("repeats_failed"):
            out.append(f"{label}: {r['repeats_failed']} failed repeat(s), left out of every figure.")
        if r.get("errors"):
            out.append(f"{label}: {r['errors']} wrong or failed answers (not counted as RPS).")
        if r.get("unsteady"):
            out.append(f"{label}: {r['unsteady']} unsteady repeat(s) (a quarter-second below 80% of the median one).")
    for s in m.skipped:
        out.append(f"Skipped {s.key} {s.scenario}: {s.reason}")
    shared = sorted(set(m.config.server_cpus) & set(m.config.load_cpus))
    if shared:
        out.append(
            f"The server and the load generator shared CPUs {shared}: the client competed with the server, so every "
            "figure here includes that contention."
        )
    if bundle.calibration is None:
        out.append("No calibration in this run: the charts have no load-generator ceiling line.")
    return out


def _cell(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:g}"
    return html.escape(str(value))


SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  const key = tr => { const t = tr.children[col].dataset.v; const n = parseFloat(t); return isNaN(n) ? t : n; };
  [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * dir).forEach(r => body.append(r));
}));
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.dataset.imagesLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesTotal = imgs.length;
  document.body.dataset.tableRows = document.querySelectorAll('#summary tbody tr').length;
});
"""

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px;margin:6px 0}
.lead{background:#eef6ee;border-left:4px solid #3a8a3a;padding:8px 12px;margin:6px 0}
li.same{color:#666}figure{margin:16px 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:12px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4;cursor:pointer;position:sticky;top:0}td:nth-child(-n+2){text-align:left}
tr.client td{background:#fbeaea}tr.unclear td{background:#fdf6e3}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{color:#666}
"""


def noise_line(noises: dict[str, Noise]) -> str:
    """The run's noise per scenario: with what is fitted out (the rounds' drift, the CPU's speed during the windows),
    without the speed term, without anything; the rounds' factors and the speed term's exponent."""

    def pct(sd: float) -> str:
        return f"{100 * (math.exp(sd) - 1):.1f}%" if math.isfinite(sd) else "?"

    said = []
    for scenario, n in sorted(noises.items()):
        if not math.isfinite(n.sd):
            continue
        rounds = ", ".join(f"{f:.2f}" for _, f in sorted(n.factors.items()))
        if n.beta is not None:
            text = (
                f"{scenario}: one repeat's noise {n.percent:.1f}% (1 sd) with the rounds' drift and the server CPU's "
                f"speed fitted out (RPS ∝ speed^{n.beta:.2f}), {pct(n.unspeeded_sd)} with the rounds' only, "
                f"{pct(n.unblocked_sd)} with neither"
            )
        else:
            text = f"{scenario}: one repeat's noise {n.percent:.1f}% (1 sd) with the rounds' drift fitted out, " + (
                f"{pct(n.unblocked_sd)} without"
            )
        said.append(text + (f"; round factors {rounds}" if rounds else ""))
    return "Noise — " + "; ".join(said) + "." if said else ""


def write(bundle: Bundle, data: dict[str, Any], charts: list[Path]) -> list[Path]:
    rows = summarize(bundle)
    found = points(bundle)
    notes = warnings(bundle, rows)
    leads = findings.leaders(found)
    said = findings.verdicts(found)
    noises = noise(found)
    noise_said = noise_line(noises)
    m = bundle.manifest
    when = datetime.fromtimestamp(m.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>ASGI Bench Lab — {html.escape(m.run_id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>ASGI Bench Lab — run {html.escape(m.run_id)}</h1>",
        f"<p>{when} · status <b>{m.status}</b> · preset {html.escape(m.config.preset or 'none (cells chosen)')} · "
        f"{html.escape(data['caption'])}</p>",
        "<h2>At equal load</h2>",
        *(f"<div class=lead>{html.escape(lead.text(found))}</div>" for lead in leads),
        "" if leads else "<p>No equal-load sweep in this run.</p>",
        "<h2>Verdicts</h2><p>Each comparison between cells that differ in one thing, with its 95% interval from the "
        "run's pooled repeat noise (lab/stats.py); a difference inside the noise is called indistinguishable. "
        f"{html.escape(noise_said)}</p>",
    ]
    for role, title in findings.ROLE_TITLES.items():
        mine = [c for c in said if c.role == role]
        if mine:
            parts.append(f"<h3>{html.escape(title)}</h3><ul>")
            parts += [
                f"<li class={'diff' if c.significant else 'same'}>{html.escape(c.scenario)}: "
                f"{html.escape(findings.verdict_text(c, found, noises))}</li>"
                for c in mine
            ]
            parts.append("</ul>")
    parts += ["<h2>Warnings</h2>", *(f"<div class=warn>{html.escape(n)}</div>" for n in notes)]
    parts += ["" if notes else "<p>None.</p>", "<h2>Charts</h2>"]
    for path in charts:
        if path.suffix == ".png":
            encoded = base64.b64encode(path.read_bytes()).decode()
            parts.append(
                f"<figure><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{encoded}'>"
                f"<figcaption>{html.escape(path.stem)} (SVG: charts/{html.escape(path.stem)}.svg)</figcaption></figure>"
            )
    parts.append("<h2>Results</h2><p>Click a column to sort. Red rows: client-limited; yellow: unclear.</p>")
    parts.append("<table id=summary class=sortable><thead><tr>")
    parts += [f"<th>{html.escape(title)}</th>" for _, title in TABLE_COLUMNS]
    parts.append("</tr></thead><tbody>")
    for r in rows:
        parts.append(f"<tr class={r.get('limit') or 'none'}>")
        parts += [f"<td data-v='{html.escape(str(r.get(k, '')))}'>{_cell(r.get(k))}</td>" for k, _ in TABLE_COLUMNS]
        parts.append("</tr>")
    parts.append("</tbody></table>")
    if bundle.calibration:
        c = bundle.calibration
        parts.append(
            f"<h2>Load generator calibration</h2><p>On {html.escape(c.cell)}, through this run's backends:</p><ul>"
        )
        for p in c.points:
            wrk = f"wrk {p.referee.rps:,.0f} RPS, Locust ÷ wrk {p.lab_vs_referee}" if p.referee else "no referee"
            parts.append(
                f"<li>{html.escape(p.scenario)}: Locust {p.lab_rps:,.0f} RPS ({wrk}); client CPU {p.client_us} µs and "
                f"server CPUs {p.server_cpus_us} µs per answer; limit {p.limit}; ceiling {p.ceiling_rps:,.0f} RPS "
                f"({p.ceiling})</li>"
            )
        parts.append("</ul>")
    parts.append(f"<h2>How the run went</h2><p>Extra repeats: {html.escape(m.extra_rule)}.</p><ul>")
    parts += [f"<li>round {i}: {html.escape(', '.join(order))}</li>" for i, order in enumerate(m.rounds, start=1)]
    again = Counter((r.key, r.scenario) for r in bundle.repeats if r.referee)
    if any(n > 1 for n in again.values()):
        parts.append(
            "<li>wrk ran in more than one round on these points (Locust ÷ wrk outside "
            f"{REFEREE_SHARE:g}–{REFEREE_ABOVE:g} after the rounds before): "
            + html.escape(", ".join(f"{k} {s} ({n} rounds)" for (k, s), n in again.items() if n > 1))
            + "</li>"
        )
    parts.append("</ul><ul>")
    parts += [
        f"<li>{html.escape(s)} sweep: {', '.join(f'{r:g}' for r in r_.common)} for every cell"
        + (f"; {', '.join(f'{r:g}' for r in r_.fast)} for the cells that reach them" if r_.fast else "")
        + f" ({html.escape(r_.chosen_from)})</li>"
        for s, r_ in m.sweep.items()
    ]
    parts.append("</ul><ul>")
    parts += [
        f"<li>part {i}: {datetime.fromtimestamp(p.started, UTC):%H:%M:%S}–"
        f"{datetime.fromtimestamp(p.ended, UTC):%H:%M:%S} UTC {p.status}"
        if p.ended
        else f"<li>part {i}: running"
        for i, p in enumerate(m.parts, start=1)
    ]
    parts.append("</ul>")
    machine = m.machine.model_dump()
    parts.append("<h2>Machine and versions</h2><dl>")
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in machine.items()]
    if m.speed:
        parts.append(
            f"<dt>speed index</dt><dd>server CPU {m.speed.server_ops:,.0f} ops/s (samples "
            f"{min(m.speed.server_samples):,.0f}–{max(m.speed.server_samples):,.0f}), load CPU "
            f"{m.speed.load_ops:,.0f} ops/s ({min(m.speed.load_samples):,.0f}–{max(m.speed.load_samples):,.0f}); "
            f"{len(m.speed.server_samples)} samples of {html.escape(m.speed.workload)}</dd>"
        )
    parts.append(f"<dt>lab commit</dt><dd>{html.escape(str(m.lab_commit))}</dd>")
    parts += [f"<dt>{p}</dt><dd>{html.escape(m.versions[p])}</dd>" for p in key_packages() if p in m.versions]
    parts.append("</dl><details><summary>Run configuration and every installed package</summary><pre>")
    parts.append(
        html.escape(json.dumps({"config": m.config.model_dump(mode="json"), "versions": m.versions}, indent=1))
    )
    parts.append(f"</pre></details><script>{SORT_SCRIPT}</script></body></html>")
    report = bundle.root / "report.html"
    atomic_write(report, "".join(parts))

    md = [f"# ASGI Bench Lab — run {m.run_id}", "", f"{when}, status {m.status}. {data['caption']}", ""]
    md += ["## At equal load", ""] + ([f"- {lead.text(found)}" for lead in leads] or ["No sweep in this run."]) + [""]
    md += ["## Verdicts (95% confidence; differences inside the noise are indistinguishable)", ""]
    md += [noise_said, ""] if noise_said else []
    for role, title in findings.ROLE_TITLES.items():
        mine = [c for c in said if c.role == role]
        if mine:
            md += (
                [f"### {title}", ""]
                + [f"- {c.scenario}: {findings.verdict_text(c, found, noises)}" for c in mine]
                + [""]
            )
    md += ["## Warnings", ""] + ([f"- {n}" for n in notes] or ["None."]) + [""]
    md += [
        "## Results",
        "",
        "| scenario | cell | RPS median at the run's mean speed (95% CI) | limit | p50 µs | p99 µs | server µs/req "
        "| errors |",
    ]
    md += ["|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "ok":
            md.append(f"| {r['scenario']} | {r['key']} | {r['status']} | | | | | |")
            continue
        offered = f" @{r['offered_rps']:g}" if r.get("offered_rps") else ""
        ci = f" ({r['rps_ci_low']:,.0f}–{r['rps_ci_high']:,.0f})" if r.get("rps_ci_low") is not None else ""
        level = r.get("rps_at_mean_speed") or r["rps_median"]
        md.append(
            f"| {r['scenario']}{offered} | {r['key']} | {level:,.0f}{ci} | {r['limit']} | {r['p50_us']} "
            f"| {r['p99_us']} | {r['server_cpus_us_per_req']} | {r['errors']} |"
        )
    summary = bundle.root / "summary.md"
    atomic_write(summary, "\n".join(md) + "\n")
    return [report, summary]
