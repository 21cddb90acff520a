"""What a run says, in sentences a reader can act on: who leads at each common offered rate, a verdict for every
comparison the lab states, and the three-line headline printed at the end of a run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lab import stats
from lab.bundle import Bundle
from lab.results import Point, closed, comparisons, noise, points

ROLE_TITLES = {
    "server": "Server vs server (same app and event loop)",
    "app": "Raw ASGI vs Starlette vs FastAPI (same stack)",
    "loop": "Event loop vs event loop (same server and app)",
    "workers": "Worker count (same stack and app)",
}


def name(key: str, found: list[Point]) -> str:
    """A cell's readable name: 'granian uvloop/hyper · raw'."""
    point = next((p for p in found if p.key == key), None)
    return f"{point.stack} · {point.cell.app}" if point else key


@dataclass(frozen=True)
class Leaders:
    """At one offered rate of one scenario: the cell with the lowest p99 and the cheapest per answer."""

    scenario: str
    rate: float
    cells: int  # how many cells served this rate without shortfall
    lowest_p99: tuple[str, int]
    cheapest: tuple[str, float] | None  # by the server processes' own CPU per answer

    def text(self, found: list[Point]) -> str:
        p99 = f"lowest p99 is {name(self.lowest_p99[0], found)} ({self.lowest_p99[1] / 1000:.2f} ms)"
        who, us = self.cheapest if self.cheapest else ("", 0.0)
        cheap = f"; cheapest per request is {name(who, found)} ({us:.0f} µs of its processes' CPU)"
        return f"at {self.rate:,.0f} requests/s ({self.scenario}, {self.cells} cells served it): {p99}" + (
            cheap if self.cheapest else ""
        )


def leaders(found: list[Point]) -> list[Leaders]:
    """For every offered rate of the sweep: among the cells that served it, who answered fastest and cheapest."""
    out = []
    rates = sorted({(p.scenario, p.offered) for p in found if p.offered})
    for scenario, rate in rates:
        served = [
            p for p in found if p.scenario == scenario and p.offered == rate and p.repeats and not p.rate_shortfall
        ]
        with_p99 = [p for p in served if p.latency.percentiles_us.get("p99")]
        if not with_p99:
            continue
        fastest = min(with_p99, key=lambda p: p.latency.percentiles_us["p99"])
        costed = [p for p in served if p.server_us]  # the processes' own CPU: what the lab's sampling cannot touch
        cheapest = min(costed, key=lambda p: p.server_us or math.inf) if costed else None
        out.append(
            Leaders(
                scenario,
                rate,
                len(served),
                (fastest.key, fastest.latency.percentiles_us["p99"]),
                (cheapest.key, cheapest.server_us) if cheapest and cheapest.server_us else None,
            )
        )
    return out


def verdicts(found: list[Point]) -> list[stats.Comparison]:
    """Every comparison the lab states, ordered by scenario, kind and size of the difference."""
    order = list(ROLE_TITLES)
    return sorted(comparisons(found), key=lambda c: (c.scenario, order.index(c.role), -abs(math.log(c.ratio))))


def limit_of(key: str, scenario: str, found: list[Point], noises: dict[str, stats.Noise]) -> str:
    point = next((p for p in closed(found, scenario) if p.key == key), None)
    return point.verdict(noises.get(scenario))[0] if point else ""


def verdict_text(c: stats.Comparison, found: list[Point], noises: dict[str, stats.Noise]) -> str:
    """The comparison in words, with the cells' names, and which of them the client limited (`noises`: the run's,
    lab/results.py: noise)."""
    text = c.text().replace(c.a, name(c.a, found), 1).replace(c.b, name(c.b, found), 1)
    limited = [k for k in (c.a, c.b) if limit_of(k, c.scenario, found, noises) == "client"]
    if limited:
        text += f" — but {', '.join(name(k, found) for k in limited)} was limited by the client, not the server"
    return text


def headline(bundle: Bundle) -> list[str]:
    """Three lines: the fastest cell per scenario, the leaders at the highest rate all cells served, and how sure."""
    found = points(bundle)
    noises = noise(found)
    lines = []
    tops = []
    for scenario in dict.fromkeys(p.scenario for p in found if not p.offered):
        mine = closed(found, scenario)
        if mine:
            top = max(mine, key=lambda p: p.level(noises[scenario]))
            low, high = top.interval(noises[scenario])
            tops.append(
                f"{scenario}: {name(top.key, found)} {top.level(noises[scenario]):,.0f} RPS "
                f"(95% CI {low:,.0f}-{high:,.0f}, {top.verdict(noises[scenario])[0]}-limited)"
            )
    lines.append("fastest — " + ("; ".join(tops) if tops else "nothing measured"))
    found_leaders = leaders(found)
    everyone = {}
    for lead in found_leaders:
        swept = len({p.key for p in found if p.scenario == lead.scenario and p.offered})
        if lead.cells == swept:
            everyone[lead.scenario] = lead  # the highest rate every cell served wins (rates ascend)
    lines.append(
        "equal load — "
        + ("; ".join(lead.text(found) for lead in everyone.values()) if everyone else "no sweep in this run")
    )
    said = verdicts(found)
    significant = sum(c.significant for c in said)
    limited = sum(1 for p in closed(found) if p.verdict(noises.get(p.scenario))[0] == "client")
    lines.append(
        f"{significant} of {len(said)} comparisons differ at 95% confidence, the rest are indistinguishable at this "
        f"noise; {limited} client-limited point(s), {len(bundle.failures)} failure(s); status {bundle.manifest.status}"
    )
    return lines
