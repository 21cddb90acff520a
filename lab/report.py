"""report.html (self-contained: images inline, no network) and summary.md for a result bundle."""

from __future__ import annotations

import base64
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.host import atomic_write
from lab.bundle import Bundle
from lab.results import summarize
from servers.matrix import Matrix, load

TOOL_PACKAGES = ("locust", "gevent", "hdrhistogram", "matplotlib")


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
    ("rps_min", "min"), ("rps_max", "max"), ("rps_spread_pct", "spread %"), ("p50_us", "p50 µs"),
    ("p99_us", "p99 µs"), ("p99_9_us", "p99.9 µs"), ("errors", "errors"), ("client_bound", "client-bound"),
    ("server_cpu_cores", "server cores"), ("server_rss_mb", "RSS MiB"), ("startup_s", "startup s"),
    ("status", "status"),
]  # fmt: skip


def warnings(bundle: Bundle, rows: list[dict[str, Any]]) -> list[str]:
    out = []
    if bundle.manifest.status != "complete":
        out.append(f"The run is {bundle.manifest.status}: the results below are partial.")
    bound = [f"{r['key']} {r['scenario']}" for r in rows if r.get("client_bound")]
    if bound:
        out.append(
            f"{len(bound)} result(s) were client-bound — the load generator, not the server, was the limit, so these "
            f"RPS are a floor for the server: {', '.join(bound)}."
        )
    for f in bundle.failures:
        out.append(f"FAILED {f.key} {f.scenario or ''} during {f.phase}: {f.error}")
    for r in rows:
        if r.get("errors"):
            out.append(f"{r['key']} {r['scenario']}: {r['errors']} wrong or failed responses (not counted as RPS).")
        if r.get("rate_shortfall"):
            out.append(f"{r['key']} {r['scenario']} at {r['offered_rps']:g} offered RPS: achieved rate fell short.")
    for s in bundle.manifest.skipped:
        out.append(f"Skipped {s.key} {s.scenario}: {s.reason}")
    shared = sorted(set(bundle.manifest.config.server_cpus) & set(bundle.manifest.config.load_cpus))
    if shared:
        out.append(
            f"The server and the load generator shared CPUs {shared}: the client competed with the server, so every "
            "figure here includes that contention, and client-bound verdicts count the server's CPU use too."
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
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px;margin:6px 0}
figure{margin:16px 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:12px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4;cursor:pointer;position:sticky;top:0}td:nth-child(-n+2){text-align:left}
tr.bound td{background:#fbeaea}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{color:#666}
"""


def write(bundle: Bundle, data: dict[str, Any], charts: list[Path]) -> list[Path]:
    rows = summarize(bundle)
    notes = warnings(bundle, rows)
    m = bundle.manifest
    when = datetime.fromtimestamp(m.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>ASGI Bench Lab — {html.escape(m.run_id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>ASGI Bench Lab — run {html.escape(m.run_id)}</h1>",
        f"<p>{when} · status <b>{m.status}</b> · preset {html.escape(m.config.preset or 'none (cells chosen)')} · "
        f"{html.escape(data['caption'])}</p>",
        "<h2>Warnings</h2>",
        *(f"<div class=warn>{html.escape(n)}</div>" for n in notes),
        "" if notes else "<p>None.</p>",
        "<h2>Charts</h2>",
    ]
    for path in charts:
        if path.suffix == ".png":
            encoded = base64.b64encode(path.read_bytes()).decode()
            parts.append(
                f"<figure><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{encoded}'>"
                f"<figcaption>{html.escape(path.stem)} (SVG: charts/{html.escape(path.stem)}.svg)</figcaption></figure>"
            )
    parts.append("<h2>Results</h2><p>Click a column to sort. Red rows were client-bound.</p>")
    parts.append("<table id=summary class=sortable><thead><tr>")
    parts += [f"<th>{html.escape(title)}</th>" for _, title in TABLE_COLUMNS]
    parts.append("</tr></thead><tbody>")
    for r in rows:
        parts.append(f"<tr class={'bound' if r.get('client_bound') else 'ok'}>")
        parts += [f"<td data-v='{html.escape(str(r.get(k, '')))}'>{_cell(r.get(k))}</td>" for k, _ in TABLE_COLUMNS]
        parts.append("</tr>")
    parts.append("</tbody></table>")
    if bundle.calibration:
        c = bundle.calibration
        wrk = f"{c.referee.rps:,.0f} RPS" if c.referee else "not installed"
        parts.append(
            f"<h2>Load generator calibration</h2><p>On {html.escape(c.cell)} ({c.scenario}), one run: lab client "
            f"{c.lab_client.rps:,.0f} RPS ({c.lab_client.rps_per_core:,.0f} per core), wrk (the referee) {wrk}; "
            f"lab client ÷ wrk {c.lab_vs_referee}.</p>"
        )
    machine = m.machine.model_dump()
    parts.append("<h2>Machine and versions</h2><dl>")
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in machine.items()]
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
    md += ["## Warnings", ""] + ([f"- {n}" for n in notes] or ["None."]) + [""]
    md += ["## Results", "", "| scenario | cell | RPS median (min–max) | p50 µs | p99 µs | errors | client-bound |"]
    md += ["|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            md.append(f"| {r['scenario']} | {r['key']} | {r['status']} | | | | |")
            continue
        offered = f" @{r['offered_rps']:g}" if r.get("offered_rps") else ""
        rps = f"{r['rps_median']:,.0f} ({r['rps_min']:,.0f}–{r['rps_max']:,.0f})"
        md.append(
            f"| {r['scenario']}{offered} | {r['key']} | {rps} | {r['p50_us']} | {r['p99_us']} | {r['errors']} "
            f"| {'yes' if r['client_bound'] else ''} |"
        )
    summary = bundle.root / "summary.md"
    atomic_write(summary, "\n".join(md) + "\n")
    return [report, summary]
