"""What a run says, in words, from its one analysis (lab/analysis/analyze.py): the bottom-line table, one sentence per
app and scenario, a verdict for every comparison, the leaders at equal load, and the headline printed at the end of a
run. The report (HTML and Markdown) and compare read these; none of them computes a figure.

Every ratio said is one measured side by side, with its 95% interval over the rounds; every RPS said is a median of
what was measured alone, with the range of its repeats beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lab.analysis import stats
from lab.analysis.analyze import FEW_PERCENT, Analysis
from lab.analysis.comparisons import Leaders, Ranked, Ranking, Stated, Versus
from lab.analysis.labels import app_title
from lab.analysis.stats import Interval, Paired
from servers.matrix import Cell

# What changes between a comparison's two cells -> its section's title (lab/analysis/stats.py: role treats the HTTP
# implementation as going with the server and with the loop, so these pairs are what a run compares).
CHANGE_TITLES = {
    ("variant",): "B against A (the same cell in the run's two variants)",
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
    "its HTTP/1.1 twin has one per connection. The ratio is throughput over h2 ÷ over HTTP/1.1, side by side.",
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
    ("RPS", "correct answers per second of one cell loaded alone: the median of its repeats, with their range; on "
     "this kind of machine a rerun can land anywhere in a range wider than that"),
    ("side by side", "cells started afresh and loaded at once on the same server CPUs, each answering in proportion to "
     "how little CPU an answer costs it: their ratio is measured in the same seconds, so the machine's changes of "
     "speed fall on all alike; one round is one estimate, the interval is over the rounds"),
    ("closed model", "a fixed number of connections, each sending its next request when the last is answered: "
     "measures throughput (RPS), whose latency only restates it"),
    ("open model", "requests sent on a Poisson schedule at an offered rate whatever the server does, latency counted "
     "from each request's scheduled time: compares latency and cost at equal load"),
    ("knee", "the first offered rate a cell could not serve (fewer than 95% of the scheduled requests answered)"),
    ("limit", "server: its CPUs were the limit, as they should be; client: Locust was, so the figure is a floor "
     "(wrk's is beside it); unclear: Locust fell short of wrk while its CPU had room; shared: the server and Locust "
     "took CPU from each other"),
    ("rank", "1 + the number of stacks significantly faster side by side (95%); stacks the lab cannot tell apart "
     "share a rank"),
    ("95% CI", "for a ratio, Student's t over the side-by-side rounds; for a p99, the order statistics at binomial "
     "ranks of one window's latencies"),
)  # fmt: skip


def rank_text(rank: int | None) -> str:
    return f"#{rank}" if rank else "no rank"


def kilo(rps: float) -> str:
    return f"{rps / 1000:.1f}k" if rps >= 1000 else f"{rps:.0f}"


def spread(measured: Interval | None) -> str:
    """The range of the repeats: '4.4k-5.0k' (with an en dash)."""
    return f"{kilo(measured.low)}–{kilo(measured.high)}" if measured else "no repeat"


def times(p: Paired | None, digits: int = 2) -> str:
    """B ÷ A with its interval, '1.27x (95% CI 1.25-1.29)'; without an interval, the ratio and why."""
    if p is None:
        return "not measured side by side"
    if not p.measurable:
        return f"{p.ratio:.{digits}f}× (one round: no interval)"
    return f"{p.ratio:.{digits}f}× (95% CI {p.low:.{digits}f}–{p.high:.{digits}f})"


def p99_text(us: int | None, interval: Interval | None, unit: bool = True) -> str:
    if us is None:
        return ""
    if not unit:
        return f"{us / 1000:.2f}" + (f" ({interval.low / 1000:.2f}–{interval.high / 1000:.2f})" if interval else "")
    said = f" (95% CI {interval.low / 1000:.2f}–{interval.high / 1000:.2f})" if interval else ""
    return f"{us / 1000:.2f} ms" + said


def faster_text(p: Paired, a: str, b: str) -> str:
    """The pair in words, faster first, 'X 1.27x as fast as Y (95% CI 1.25-1.29)', or level with its interval."""
    if not p.measurable:
        return f"{b} ÷ {a} {p.ratio:.2f}× (one side-by-side round: no interval, no verdict)"
    if not p.significant:
        return f"{a} vs {b}: indistinguishable at this noise ({b} ÷ {a} {times(p)}, ±{p.half_pct:.1f}%)"
    fast, slow, q = (b, a, p) if p.ratio > 1 else (a, b, p.turned())
    return f"{fast} {times(q)} as fast as {slow}"


def verdict_text(s: Stated) -> str:
    """The comparison in words: what stays the same first, then the faster side as a ratio, with its interval."""
    p = s.paired
    if "app" in s.changes:
        same, a_part, b_part = s.a.split(" on ", 1)[1], s.a.split(" on ", 1)[0], s.b.split(" on ", 1)[0]
    else:
        same, a_part, b_part = s.a.split(" on ", 1)[0], s.a.split(" on ", 1)[1], s.b.split(" on ", 1)[1]
    said = f"{same}, {p.scenario}: {faster_text(p, a_part, b_part)}"
    if s.flagged:
        said += f" — {s.ratio.unsaturated} window(s) the client paced: not ranked on"
    if s.limited:
        said += f" — {' and '.join(s.limited)}: its own RPS a floor"
    return said


def sentence(r: Ranking, a: Analysis) -> str:
    """One app and scenario in plain words: who leads, by how much side by side, and how sure."""
    head = f"{app_title(r.app, a.matrix)}, {r.scenario}: "
    stacks = list(r.stacks)
    if not stacks:
        return head + "nothing measured."
    if len(stacks) == 1:
        return head + f"only {stacks[0].stack} was measured ({kilo(stacks[0].median)} RPS)."
    bases = {Cell.parse(s.key).base.key for s in stacks}
    side = next((v for v in a.versus if v.scenario == r.scenario and v.cell.key in bases), None)
    if len(bases) == 1 and side is not None:  # one cell's two variants: its A/B verdict says it all
        return versus_verdict(side, a) + " (the A/B verdict)."
    if all(s.rank is None for s in stacks):
        measured = ", ".join(f"{s.stack} {kilo(s.median)}" for s in stacks)
        return head + f"not measured side by side, so no order is stated; alone: {measured}."
    top = [s for s in stacks if s.rank == 1]
    close = [s for s in stacks[1:] if s.versus_best and s.versus_best.ratio * 100 >= 100 - FEW_PERCENT]
    lead = top[0]
    if len(top) == 1:
        second = stacks[1]
        text = f"{lead.stack} fastest, {times(turned(second.versus_best))} as fast as {second.stack}"
    else:
        text = f"{' ≈ '.join(s.stack for s in top)} lead, not told apart at this noise"
        if widest := max((s.versus_best.half_pct for s in top[1:] if s.versus_best), default=None):
            text += f" (±{widest:.1f}%)"
    rest = [s for s in stacks if s.rank != 1 and s not in close]
    if close and len(top) == 1:
        text += "; within a few percent: " + ", ".join(f"{s.stack} at {of_best(s.versus_best)}" for s in close)
    if rest:
        slowest = rest[-1]
        text += f"; the slowest {slowest.stack} at {of_best(slowest.versus_best)}"
    return head + text + " (side by side)."


def of_best(p: Paired | None) -> str:
    """A stack against the best: '0.18 of the best (95% CI 0.18-0.19)'."""
    if p is None:
        return "the best"
    return f"{p.ratio:.2f} of the best" + (f" (95% CI {p.low:.2f}–{p.high:.2f})" if p.measurable else "")


def turned(p: Paired | None) -> Paired | None:
    return p.turned() if p else None


def sentences(a: Analysis) -> list[str]:
    return [sentence(r, a) for r in a.rankings]


@dataclass(frozen=True)
class Compact:
    """The bottom-line table: stacks as rows, app x scenario as columns, each cell a stack's ranked figure."""

    columns: tuple[tuple[str, str], ...]  # (scenario, app)
    rows: tuple[tuple[str, tuple[Ranked | None, ...]], ...]  # (stack, one entry per column)


def share(e: Ranked) -> float:
    """A stack's ratio to its column's best, side by side (1 for the best itself; 0 when not measured)."""
    return 1.0 if e.versus_best is None and e.rank == 1 else (e.versus_best.ratio if e.versus_best else 0.0)


def compact(a: Analysis) -> Compact:
    """Rows ordered by the stacks' mean ratio to the best over the columns: the fastest stack first."""
    columns = tuple((r.scenario, r.app) for r in a.rankings)
    rows = []
    for stack in a.stacks:
        entries = tuple(next((s for s in r.stacks if s.stack == stack), None) for r in a.rankings)
        if any(entries):
            rows.append((stack, entries))
    rows.sort(key=lambda row: -sum(share(e) for e in row[1] if e) / sum(1 for e in row[1] if e))
    return Compact(columns, tuple(rows))


def protocols_rows(a: Analysis) -> list[tuple[str, str, str, str]]:
    """The report's table of HTTP/2 ÷ HTTP/1.1 (a.protocols, the numbers the http2-SCENARIO charts draw): scenario,
    app, stack, ratio with its interval."""
    return [(p.paired.scenario, app_title(p.h1.app, a.matrix), p.stack, times(p.paired)) for p in a.protocols]


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
    if lead.cheapest and cheap and cheap.server_us:
        cost = f"cheapest {a.label(lead.cheapest)}, {cheap.server_us:.0f} µs of its processes' CPU per request"
    elif lead.cost_tied:
        cost = f"cheapest indistinguishable among {named(lead.cost_tied)}"
    else:
        cost = ""
    return f"{where}: {p99}" + (f"; {cost}" if cost else "")


def at_common_rate(a: Analysis) -> list[Leaders]:
    """The leaders at each swept scenario's common rate (the highest every cell served)."""
    return [x for x in a.leaders if a.common_rate.get(x.scenario) == x.rate]


def entry_text(e: Ranked) -> str:
    """A bottom-line entry: the median RPS alone, then its ratio to the column's best side by side, and its rank."""
    floor = "*" if e.limit in ("client", "unclear", "shared") else ""
    best = "best" if e.versus_best is None else f"{e.versus_best.ratio:.2f}×±{e.versus_best.half_pct:.0f}%"
    if e.versus_best is not None and not e.versus_best.measurable:
        best = f"{e.versus_best.ratio:.2f}×"
    return f"{kilo(e.median)}{floor} {best} {rank_text(e.rank)}"


def text_table(a: Analysis) -> list[str]:
    """The bottom-line table in fixed-width text: stacks as rows, app x scenario as columns."""
    table = compact(a)
    header = ["stack", *(f"{app_title(app, a.matrix)} {scenario}" for scenario, app in table.columns)]
    body = [[stack, *(entry_text(e) if e else "—" for e in entries)] for stack, entries in table.rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]]


def fastest(a: Analysis) -> str:
    """The fastest cell per scenario as measured alone, with its range and limit."""
    tops = []
    for scenario in a.scenarios:
        top = max(a.closed(scenario), key=lambda f: f.median)
        tops.append(f"{scenario}: {top.label} {top.median:,.0f} RPS (repeats {spread(top.measured)}, "
                    f"{top.shown_limit}-limited)")  # fmt: skip
    return "fastest alone — " + ("; ".join(tops) if tops else "nothing measured")


def scaling(a: Analysis) -> str | None:
    """Multi-worker cells against their one-worker twins (a bigger machine's run: lab/scale.py), per scenario: N
    workers use more CPUs, so this is the one ratio the lab takes from repeats measured alone, with their spread."""
    said = []
    for scenario in a.scenarios:
        closed = {f.cell: f for f in a.closed(scenario) if f.rps}
        for cell, many in closed.items():
            one = closed.get(cell.model_copy(update={"workers": 1}))
            if cell.workers > 1 and one is not None:
                r = stats.apart(scenario, one.key, many.key, one.rps, many.rps)
                sure = (
                    f" (95% CI {r.low:.2f}–{r.high:.2f}, alone)" if r.measurable else " (one repeat each: no interval)"
                )
                said.append(f"{one.label} {scenario} {cell.workers} workers vs 1: {r.ratio:.1f}x{sure}")
    return "workers — " + "; ".join(said) if said else None


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
    """'FastAPI on uvicorn · uvloop · httptools, json: B slower than A by 3.1% (95% CI 1.2-5.0%) over 10 rounds,
    side by side': the verdict alone, as the bottom line says it."""
    p = v.paired
    a_name, b_name = a.ab or ("A", "B")
    head = f"{v.label}, {v.scenario}: "
    if not p.measurable:
        said = f"{b_name} vs {a_name}: no interval ({p.rounds} round(s) measured both; more rounds give one)"
    elif not p.significant:
        said = f"{b_name} vs {a_name}: indistinguishable at this noise (±{p.half_pct:.1f}%)"
    else:
        word, pct = ("faster", p.ratio - 1) if p.ratio > 1 else ("slower", 1 - p.ratio)
        low, high = sorted((abs(p.low - 1), abs(p.high - 1)))
        said = f"{b_name} {word} than {a_name} by {100 * pct:.1f}% (95% CI {100 * low:.1f}–{100 * high:.1f}%)"
    said += f" over {p.rounds} pair rounds, side by side"
    if v.ratio.unsaturated:
        said += (
            f" ({v.ratio.unsaturated} of {p.rounds} windows with the server CPUs not saturated, even when measured "
            "again: there the client set the pace, and B ÷ A says less about the servers' costs)"
        )
    return head + said


def versus_text(v: Versus, a: Analysis) -> str:
    """The verdict, then the server CPU per answer side by side, the p99 and CPU per request at equal load."""
    a_name, b_name = a.ab or ("A", "B")
    said = ""
    if (c := v.ratio.cost) is not None and c.measurable:
        said += f"; server CPU per answer {b_name} ÷ {a_name} {c.ratio:.3f} (95% CI {c.low:.3f}–{c.high:.3f})"
    if v.rate and v.p99[0] and v.p99[1]:
        said += (
            f"; at {v.rate:,.0f} requests/s p99 {a_name} {p99_text(v.p99[0], v.p99_interval[0])}, "
            f"{b_name} {p99_text(v.p99[1], v.p99_interval[1])}"
        )
    return versus_verdict(v, a) + said


def ab_lines(a: Analysis) -> list[str]:
    """The A/B verdicts, for the head of the headline and the report."""
    if not a.ab:
        return []
    how = "RPS measured side by side (both servers at once on the server CPUs, fresh each round)"
    lines = [f"A/B — {variant_text(a.ab[0], a)}; {variant_text(a.ab[1], a)}; {how}, 95% CI:"]
    lines += [f"  {versus_text(v, a)}" for v in a.versus] or ["  no cell was measured in both variants side by side"]
    gate = a.manifest.config.fail_if_slower
    if gate is not None:
        slow = a.slower(gate)
        lines.append(
            f"gate: {a.ab[1]} slower than {a.ab[0]} by more than {gate:g}% with 95% confidence in "
            + (", ".join(f"{v.label} {v.scenario}" for v in slow) + " — FAIL" if slow else "no cell — pass")
        )
    return lines


def headline(a: Analysis) -> list[str]:
    """What a run prints last: the A/B verdicts when it compared two variants; the bottom-line table (RPS alone, the
    ratio to the best side by side, rank) and one sentence per app and scenario; then the fastest cell per scenario,
    the leaders at equal load, and how sure."""
    lines = ab_lines(a)
    lines += [f"bottom line — RPS alone (median), × the best side by side ±95% CI, and rank of run {a.run_id}:"]
    lines += [f"  {line}" for line in text_table(a)] if a.rankings else ["  nothing measured"]
    lines += sentences(a)
    lines.append(fastest(a))
    if (workers := scaling(a)) is not None:
        lines.append(workers)
    leading = [leaders_text(x, a) for x in at_common_rate(a)]
    lines.append("equal load — " + ("; ".join(leading) if leading else "no sweep in this run"))
    significant = sum(s.paired.significant for s in a.comparisons)
    weighty = sum(c.stakes == "conclusion" for c in a.caveats)
    width = a.half_width_pct
    lines.append(
        f"{significant} of {len(a.comparisons)} comparisons differ at 95% confidence"
        + (f" (median interval ±{width:.1f}%)" if width is not None else "")
        + f"; {weighty} warning(s) that can change a conclusion, {len(a.caveats) - weighty} other(s); "
        f"{len(a.failures)} failure(s); status {a.manifest.status}"
    )
    return lines


def ratio_pct(p: Paired | None) -> str:
    """A ratio as a share, '29% (28-30%)'."""
    if p is None:
        return ""
    return f"{100 * p.ratio:.0f}%" + (f" ({100 * p.low:.0f}–{100 * p.high:.0f}%)" if math.isfinite(p.high) else "")
