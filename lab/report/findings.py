"""What a run says, in words, from its one analysis (lab/analysis.py): the bottom-line table, one sentence per app and
scenario, a verdict for every comparison, the leaders at equal load, and the headline printed at the end of a run.
The report (HTML and Markdown) and compare read these; none of them computes a figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lab.analysis.analyze import FEW_PERCENT, Analysis, Leaders, Ranked, Ranking, Stated, Versus, app_title, known
from servers.matrix import Cell

# What changes between a comparison's two cells -> its section's title (lab/stats.py: role treats the HTTP
# implementation as going with the server and with the loop, so these pairs are what a run compares).
CHANGE_TITLES = {
    ("server",): "Server alone (same loop, HTTP implementation and app)",
    ("server", "http"): "Server, each with its own HTTP implementation (same loop and app)",
    ("app",): "Raw ASGI vs Starlette vs FastAPI (same stack)",
    ("loop",): "Event loop alone (same server, HTTP implementation and app)",
    ("loop", "http"): "Event loop and HTTP implementation together (same server and app)",
    ("http",): "HTTP implementation alone, HTTP/1.1 vs HTTP/2 among them (same server, loop and app)",
    ("workers",): "Worker count (same stack and app)",
}
CHANGE_NOTES = {
    ("http",): "An h2c cell keeps the run's connections and puts --streams requests in flight on each (docs/http2.md); "
    "its HTTP/1.1 twin has one per connection. The ratio is the run's throughput over h2 ÷ over HTTP/1.1, with its "
    "95% interval.",
    ("loop", "http"): "Both change in each of these pairs (this run has no cells that change the loop alone here), so "
    "a difference belongs to the pair, not to the loop.",
    ("server", "http"): "A server and its HTTP implementation go together: granian parses HTTP in Rust, uvicorn here "
    "with httptools or h11, hypercorn with h11.",
}

# The glossary on every report: a cell key's parts, and the words the report uses.
GLOSSARY = (
    ("cell", "one server × event loop × HTTP implementation × workers × app, e.g. `granian-uvloop-hyper-w1-fastapi` "
     "(server-loop-http-wWorkers-app); a stack is a cell without its app, named `granian · uvloop`"),
    ("server", "uvicorn, hypercorn or granian, each serving the same three apps"),
    ("loop", "the asyncio event loop: asyncio's own, uvloop (libuv, C) or rloop (Rust)"),
    ("HTTP implementation", "what parses HTTP/1.1: uvicorn offers h11 (pure Python), httptools (C) or zttp (Zig); "
     "hypercorn uses h11; granian parses it in Rust (the hyper crate) with no choice, so its name leaves it out; "
     "`h2c` is HTTP/2 in cleartext with prior knowledge, on each server's own implementation"),
    ("workers", "server processes; ×2 in a name means two, none means one"),
    ("app", "raw ASGI (by hand), Starlette, FastAPI: the same answers byte for byte"),
    ("preset", "a named set of cells and settings in servers/matrix.toml (quick, default, full)"),
    ("closed model", "a fixed number of connections, each sending its next request when the last is answered: "
     "measures throughput (RPS), whose latency only restates it"),
    ("open model", "requests sent on a Poisson schedule at an offered rate whatever the server does, latency counted "
     "from each request's scheduled time: compares latency and cost at equal load"),
    ("knee", "the first offered rate a cell could not serve (fewer than 95% of the scheduled requests answered)"),
    ("limit", "server: its CPUs were the limit, as it should be; client: Locust was, so the figure is a floor (wrk's "
     "is beside it); unclear: both near saturation; shared: the server and Locust took CPU from each other"),
    ("rank", "1 + the number of stacks significantly faster (95%), from every pairwise comparison; stacks the lab "
     "cannot tell apart share a rank"),
    ("95% CI", "the interval from the run's pooled repeat noise, at the run's mean machine speed; for a p99, the "
     "order statistics at binomial ranks of one window's latencies"),
)  # fmt: skip


def rank_text(rank: int | None) -> str:
    return f"#{rank}" if rank else "no rank"


def kilo(rps: float) -> str:
    return f"{rps / 1000:.1f}k" if rps >= 1000 else f"{rps:.0f}"


def ci(interval: tuple[float, float] | None) -> str:
    return f"95% CI {interval[0]:,.0f}–{interval[1]:,.0f}" if interval else "no interval: too few repeats"


def plus_minus(level: float, interval: tuple[float, float] | None) -> str:
    """The interval as ± its half-width in % of the level ('±2%'), or '±?' without one."""
    return f"±{100 * (interval[1] - interval[0]) / 2 / level:.0f}%" if interval and level else "±?"


def p99_text(us: int | None, interval: tuple[int, int] | None, unit: bool = True) -> str:
    if us is None:
        return ""
    if not unit:
        return f"{us / 1000:.2f}" + (f" ({interval[0] / 1000:.2f}–{interval[1] / 1000:.2f})" if interval else "")
    return f"{us / 1000:.2f} ms" + (f" (95% CI {interval[0] / 1000:.2f}–{interval[1] / 1000:.2f})" if interval else "")


def names(keys: list[str], a: Analysis, scenario: str) -> str:
    """Stacks joined by ≈, those that differ only in the loop merged: 'granian (uvloop or asyncio)'."""
    groups: dict[tuple[str, str, int, str], list[str]] = {}
    for key in keys:
        f = a.point(key, scenario)
        if f is not None:
            groups.setdefault((f.cell.server, f.cell.http, f.cell.workers, f.cell.variant), []).append(key)
    said = []
    for members in groups.values():
        figs = [a.point(k, scenario) for k in members]
        limited = next((f.shown_limit for f in figs if f and f.shown_limit in ("client", "unclear")), None)
        if len(members) == 1 and figs[0]:
            text = figs[0].stack
        else:
            first = figs[0]
            assert first is not None
            rest = first.stack.split(" · ")[2:]  # the HTTP implementation and workers, when the name has them
            loops = " or ".join(f.cell.loop for f in figs if f)
            text = " · ".join([first.cell.server, *rest]) + f" ({loops})"
        said.append(text + (f" ({limited}-limited)" if limited else ""))  # `shared`: one warning says it
    return " ≈ ".join(said)


def sentence(r: Ranking, a: Analysis) -> str:
    """One app and scenario in plain words: who leads, by how much, and whether the order would hold elsewhere."""
    head = f"{app_title(r.app, a.matrix)}, {r.scenario}: "
    stacks = list(r.stacks)
    if not stacks:
        return head + "nothing measured."
    if len(stacks) == 1:
        return head + f"only {names([stacks[0].key], a, r.scenario)} was measured ({kilo(stacks[0].level)} RPS)."
    bases = {Cell.parse(s.key).base.key for s in stacks}
    side = next((v for v in a.versus if v.scenario == r.scenario and v.cell.key in bases), None)
    if len(bases) == 1 and side is not None:
        # one cell's variants: their side-by-side verdict, not the sequential rounds' levels (analysis: rankings)
        return versus_verdict(side, a) + " (the A/B verdict)."
    # the leaders: every stack not told apart from the best, and each next one within a few percent of the one above
    lead = 1
    while lead < len(stacks) and (
        stacks[lead].rank == 1 or 100 * stacks[lead].level >= (100 - FEW_PERCENT) * stacks[lead - 1].level
    ):
        lead += 1
    top, rest = stacks[:lead], stacks[lead:]
    if not known(a.noise.get(r.scenario)):
        measured = ", ".join(f"{names([s.key], a, r.scenario)} {kilo(s.level)}" for s in stacks)
        return head + f"no interval (too few repeats), so no order can be stated; as measured: {measured}."
    if len(top) == 1:
        second = rest[0]
        ratio = top[0].level / second.level if second.level else float("inf")
        text = f"{names([top[0].key], a, r.scenario)} fastest, {ratio:.2f}× the next"
    else:
        spread = 100 - top[-1].pct_of_best
        text = f"{names([s.key for s in top], a, r.scenario)}, within {max(spread, 1):.0f}%"
        told = any((s.rank or 1) > 1 for s in top)
        text += (
            ": the order among them depends on the machine"
            if told
            else " (indistinguishable at this noise; the order among them depends on the machine)"
        )
    if rest:
        tiers: dict[int, list[Ranked]] = {}
        for s in rest:
            tiers.setdefault(s.rank or 0, []).append(s)
        parts = [
            f"{names([s.key for s in tier], a, r.scenario)} at {tier[0].pct_of_best:.0f}%" for tier in tiers.values()
        ]
        slowest = rest[-1]
        ratio = stacks[0].level / slowest.level if slowest.level else 0.0
        text += (
            "; then "
            + ", ".join(parts)
            + " of the best"
            + (f" (the best {ratio:.1f}× the slowest)" if ratio >= 2 else "")
        )
    return head + text + "."


def sentences(a: Analysis) -> list[str]:
    return [sentence(r, a) for r in a.rankings]


@dataclass(frozen=True)
class Compact:
    """The bottom-line table: stacks as rows, app x scenario as columns, each cell a stack's ranked figure."""

    columns: tuple[tuple[str, str], ...]  # (scenario, app)
    rows: tuple[tuple[str, tuple[Ranked | None, ...]], ...]  # (stack, one entry per column)


def compact(a: Analysis) -> Compact:
    """Rows ordered by the stacks' mean share of the best over the columns: the fastest stack first."""
    columns = tuple((r.scenario, r.app) for r in a.rankings)
    rows = []
    for stack in a.stacks:
        entries = tuple(next((s for s in r.stacks if s.stack == stack), None) for r in a.rankings)
        if any(entries):
            rows.append((stack, entries))
    rows.sort(key=lambda row: -sum(e.pct_of_best for e in row[1] if e) / sum(1 for e in row[1] if e))
    return Compact(columns, tuple(rows))


def verdict_text(s: Stated) -> str:
    """The comparison in words: what stays the same first, then the faster side as a ratio, with its interval."""
    c = s.comparison
    a_label, b_label = s.a, s.b
    if "app" in s.changes:
        same = a_label.split(" on ", 1)[1]
        a_part, b_part = a_label.split(" on ", 1)[0], b_label.split(" on ", 1)[0]
    else:
        same = a_label.split(" on ", 1)[0]
        a_part, b_part = a_label.split(" on ", 1)[1], b_label.split(" on ", 1)[1]
    head = f"{same}, {c.scenario}: "
    if not s.measurable:
        return head + f"{a_part} vs {b_part}: no interval, too few repeats"
    if not c.significant:
        said = (
            f"{a_part} vs {b_part}: indistinguishable at this noise (ratio {c.ratio:.2f}×, 95% CI "
            f"{c.low:.2f}–{c.high:.2f}×)"
        )
    else:
        fast, slow, ratio, low, high = a_part, b_part, c.ratio, c.low, c.high
        if ratio < 1:
            fast, slow, ratio, low, high = b_part, a_part, 1 / c.ratio, 1 / c.high, 1 / c.low
        said = f"{fast} {ratio:.2f}× as fast as {slow} (95% CI {low:.2f}–{high:.2f}×)"
    if s.limited:
        said += f" — {' and '.join(s.limited)}: a floor (not server-limited)"
    return head + said


def protocols_rows(a: Analysis) -> list[tuple[str, str, str, str, str]]:
    """The report's table of HTTP/2 ÷ HTTP/1.1 (a.protocols, the numbers the http2-SCENARIO charts draw): scenario,
    app, stack, ratio, 95% interval."""
    rows = []
    for p in a.protocols:
        said = "no interval: too few repeats"
        if p.interval:
            said = f"{p.low:.2f}–{p.high:.2f}" + ("" if p.significant else ", no difference")
        rows.append((p.scenario, app_title(p.h1.app, a.matrix), p.stack, f"{p.ratio:.2f}×", said))
    return rows


def change_title(changes: tuple[str, ...]) -> str:
    return CHANGE_TITLES.get(changes, " and ".join(changes) + " change together")


def leaders_text(lead: Leaders, a: Analysis) -> str:
    """At one rate: who has the lowest p99 and who is cheapest, where the lab can tell; else who is level."""
    cells = f"{len(lead.served)} of {lead.offered_to} cell{'s' if lead.offered_to != 1 else ''}"
    where = f"at {lead.rate:,.0f} requests/s ({lead.scenario}, {cells} served it)"
    if len(lead.served) < 2:
        return f"{where}: one cell served it, nothing to compare"

    def named(keys: tuple[str, ...]) -> str:
        shown = [a.label(k) for k in keys[:3]]
        return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    first = a.point(lead.p99_tied[0], lead.scenario, lead.rate)
    if lead.lowest_p99 and first:
        p99 = f"lowest p99 {a.label(lead.lowest_p99)}, {p99_text(first.p99_us, first.p99_interval)}"
    else:
        p99 = f"lowest p99 indistinguishable at this noise among {named(lead.p99_tied)}"
    cheap = a.point(lead.cost_tied[0], lead.scenario, lead.rate) if lead.cost_tied else None
    if lead.cheapest and cheap:
        cost = f"cheapest {a.label(lead.cheapest)}, {cheap.server_us:.0f} µs of its processes' CPU per request"
    elif lead.cost_tied:
        cost = f"cheapest indistinguishable among {named(lead.cost_tied)}"
    else:
        cost = ""
    return f"{where}: {p99}" + (f"; {cost}" if cost else "")


def at_common_rate(a: Analysis) -> list[Leaders]:
    """The leaders at each swept scenario's common rate (the highest every cell served)."""
    return [x for x in a.leaders if a.common_rate.get(x.scenario) == x.rate]


def text_table(a: Analysis) -> list[str]:
    """The bottom-line table in fixed-width text: stacks as rows, app x scenario as columns, 'RPS ±CI rank'."""
    table = compact(a)
    header = ["stack", *(f"{app_title(app, a.matrix)} {scenario}" for scenario, app in table.columns)]
    body = [
        [
            stack,
            *(f"{kilo(e.level)} {plus_minus(e.level, e.interval)} {rank_text(e.rank)}" if e else "—" for e in entries),
        ]
        for stack, entries in table.rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]]


def fastest(a: Analysis) -> str:
    """The fastest cell per scenario, with its interval and limit."""
    tops = []
    for scenario in a.scenarios:
        top = max(a.closed(scenario), key=lambda f: f.level or 0.0)
        interval = ci(top.interval)
        tops.append(f"{scenario}: {top.label} {top.level or 0:,.0f} RPS ({interval}, {top.shown_limit}-limited)")
    return "fastest — " + ("; ".join(tops) if tops else "nothing measured")


def scaling(a: Analysis) -> str | None:
    """Multi-worker cells against their one-worker twins (a bigger machine's run: lab/scale.py), per scenario."""
    found = []
    for scenario in a.scenarios:
        closed = {f.cell: f for f in a.closed(scenario) if f.level}
        for cell, many in closed.items():
            one = closed.get(cell.model_copy(update={"workers": 1}))
            if cell.workers > 1 and one is not None and one.level and many.level:
                found.append(f"{one.label} {scenario} {cell.workers} workers vs 1: {many.level / one.level:.1f}x")
    return "workers — " + "; ".join(found) if found else None


def variant_text(name: str, a: Analysis) -> str:
    """What a variant is: 'B = uvicorn 0.53.0', or 'A = the image's (uvicorn 0.54.0)'."""
    env = next((e for e in a.manifest.environments if e.variant == name), None)
    if env is None or not env.own:
        touched = sorted({p for e in a.manifest.environments for p in e.own})
        known_here = [f"{p} {a.manifest.versions[p.lower()]}" for p in touched if p.lower() in a.manifest.versions]
        return f"{name} = the image's" + (f" ({', '.join(known_here)})" if known_here else "")
    said = ", ".join(f"{k} {v}" for k, v in env.own.items())
    for s in env.sources:
        said += f" from {s.path}" + (f" at {s.commit[:10]}{' (with uncommitted changes)' if s.dirty else ''}"
                                     if s.commit else "")  # fmt: skip
    return f"{name} = {said}"


def versus_verdict(v: Versus, a: Analysis) -> str:
    """'FastAPI on uvicorn · uvloop · httptools, json: B slower than A by 3.1% (95% CI 1.2-5.0%) over 10 pair
    rounds, side by side': the verdict alone, as the bottom line says it."""
    p = v.paired
    a_name, b_name = a.ab or ("A", "B")
    head = f"{v.label}, {v.scenario}: "
    if not math.isfinite(p.half_pct):
        said = f"{b_name} vs {a_name}: no interval ({p.rounds} round(s) measured both; more rounds give one)"
    elif not p.significant:
        said = f"{b_name} vs {a_name}: indistinguishable at this noise (±{p.half_pct:.1f}%)"
    else:
        word, pct = ("faster", p.ratio - 1) if p.ratio > 1 else ("slower", 1 - p.ratio)
        low, high = sorted((abs(p.low - 1), abs(p.high - 1)))
        said = f"{b_name} {word} than {a_name} by {100 * pct:.1f}% (95% CI {100 * low:.1f}–{100 * high:.1f}%)"
    said += f" over {p.rounds} {'pair rounds, side by side' if p.side_by_side else 'rounds'}"
    if v.unsaturated:
        said += (
            f" ({v.unsaturated} of {p.rounds} windows with the server CPUs not saturated, even when measured again: "
            "there the client set the pace, and B ÷ A says less about the servers' costs)"
        )
    return head + said


def versus_text(v: Versus, a: Analysis) -> str:
    """The verdict, then the server CPU per answer, the p99 at equal load and the CPU per request of each side."""
    a_name, b_name = a.ab or ("A", "B")
    said = ""
    if v.cost_paired is not None and math.isfinite(v.cost_paired.half_pct):
        c = v.cost_paired
        said += f"; server CPU per answer {b_name} ÷ {a_name} {c.ratio:.3f} (95% CI {c.low:.3f}–{c.high:.3f})"
    if v.rate and v.p99[0] and v.p99[1]:
        said += (
            f"; at {v.rate:,.0f} requests/s p99 {a_name} {p99_text(v.p99[0], v.p99_interval[0])}, "
            f"{b_name} {p99_text(v.p99[1], v.p99_interval[1])}"
        )
    if v.cost[0] and v.cost[1]:
        same = v.cost_verdict is not None and not v.cost_verdict.significant
        said += f"; server CPU per request {a_name} {v.cost[0]:.0f} µs, {b_name} {v.cost[1]:.0f} µs" + (
            " (indistinguishable)" if same else ""
        )
    return versus_verdict(v, a) + said


def ab_lines(a: Analysis) -> list[str]:
    """The A/B verdicts, for the head of the headline and the report."""
    if not a.ab:
        return []
    how = (
        "RPS measured side by side (both servers at once on the server CPUs, fresh each round)"
        if any(v.paired.side_by_side for v in a.versus)
        else "RPS paired by round"
    )
    lines = [f"A/B — {variant_text(a.ab[0], a)}; {variant_text(a.ab[1], a)}; {how}, 95% CI:"]
    lines += [f"  {versus_text(v, a)}" for v in a.versus] or ["  no cell was measured in both variants"]
    gate = a.manifest.config.fail_if_slower
    if gate is not None:
        slow = a.slower(gate)
        lines.append(
            f"gate: {a.ab[1]} slower than {a.ab[0]} by more than {gate:g}% with 95% confidence in "
            + (", ".join(f"{v.label} {v.scenario}" for v in slow) + " — FAIL" if slow else "no cell — pass")
        )
    return lines


def headline(a: Analysis) -> list[str]:
    """What a run prints last: the A/B verdicts when it compared two variants; the bottom-line table (RPS ±95%
    interval, rank) and one sentence per app and scenario, then three lines: the fastest cell per scenario, the
    leaders at equal load, and how sure."""
    lines = ab_lines(a)
    lines += [f"bottom line — RPS ±95% CI and rank (#1 = fastest; equal ranks: not told apart) of run {a.run_id}:"]
    lines += [f"  {line}" for line in text_table(a)] if a.rankings else ["  nothing measured"]
    lines += sentences(a)
    lines.append(fastest(a))
    if (scaled := scaling(a)) is not None:
        lines.append(scaled)
    leading = [leaders_text(x, a) for x in at_common_rate(a)]
    lines.append("equal load — " + ("; ".join(leading) if leading else "no sweep in this run"))
    significant = sum(s.comparison.significant for s in a.comparisons)
    weighty = sum(c.stakes == "conclusion" for c in a.caveats)
    lines.append(
        f"{significant} of {len(a.comparisons)} comparisons differ at 95% confidence; {weighty} warning(s) that can "
        f"change a conclusion, {len(a.caveats) - weighty} other(s); {len(a.failures)} failure(s); status "
        f"{a.manifest.status}"
    )
    return lines
