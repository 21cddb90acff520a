"""The warnings of a run, ranked: those that can change a conclusion, those that move only a figure, and the rest,
with the repeated low-stakes ones summed up in one line each (the full table has them per point)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lab.analysis.comparisons import Ranking, Stated
from lab.analysis.figures import Figures
from lab.bundle import Bundle

Stakes = Literal["conclusion", "figure", "low"]
ORDER: tuple[Stakes, ...] = ("conclusion", "figure", "low")
LIMIT_MEANING = {
    "client": "the load generator, not the server, was the limit (wrk's figure is beside it)",
    "unclear": "Locust fell short of wrk while its own CPU had room, or both sides were near saturation: read it as "
    "approximate",
}


@dataclass(frozen=True)
class Caveat:
    """A warning, with whether it can change a conclusion, only a figure, or neither."""

    stakes: Stakes
    text: str


def run_caveats(bundle: Bundle, said: Sequence[Stated]) -> list[Caveat]:
    """The run's state, its failures, and comparisons that rest on nothing or on windows the client paced."""
    m = bundle.manifest
    out: list[Caveat] = []
    if m.status != "complete":
        note = m.parts[-1].note if m.parts else None
        out.append(
            Caveat("conclusion", f"The run is {m.status}{f' ({note})' if note else ''}: the results are partial.")
        )
    if not said:
        out.append(
            Caveat(
                "conclusion",
                "No comparison measured side by side in this run (--pair-rounds 0, or a "
                "single cell): the figures are each stack's own, and no order between stacks is stated.",
            )
        )
    elif unknown := [s for s in said if not s.paired.measurable]:
        out.append(
            Caveat(
                "conclusion",
                f"{len(unknown)} comparison(s) measured in one side-by-side round only: no "
                "interval, so no verdict; two rounds or more give one.",
            )
        )
    flagged = [s for s in said if s.flagged]
    if flagged:
        some = "; ".join(f"{s.b} ÷ {s.a}, {s.paired.scenario}" for s in flagged[:2])
        out.append(Caveat("conclusion", f"{len(flagged)} comparison(s) had side-by-side windows with the server CPUs "
                          "not saturated even when measured again: the client set the pace there, so they rank "
                          f"nothing (e.g. {some})."))  # fmt: skip
    for f in bundle.failures:
        out.append(Caveat("conclusion", f"FAILED {f.key} {f.scenario or ''} during {f.phase}: {f.error}"))
    return out


def limit_caveats(figs: Sequence[Figures], said: Sequence[Stated], ranked: Sequence[Ranking],
                  shared: tuple[int, ...]) -> list[Caveat]:  # fmt: skip
    """A figure another limit held down is a floor: it can change a conclusion when the cell is not ahead anyway."""
    closed_figs = [f for f in figs if f.ok and not f.offered]
    if shared:
        hit = [f for f in closed_figs if f.shown_limit == "shared"]
        return [Caveat("conclusion", f"The server and the load generator shared CPUs {list(shared)}: they took CPU "
                       f"from each other, so {len(hit)} of {len(closed_figs)} throughput figures are limited by that "
                       "(`shared`) and every figure includes the contention. Pin them apart (SERVER_CPUS, LOAD_CPUS) "
                       "for the server's own figures.")]  # fmt: skip
    out = []
    for f in closed_figs:
        if f.limit not in LIMIT_MEANING:
            continue
        rank = next((r for g in ranked if g.scenario == f.scenario for r in g.stacks if r.key == f.key), None)
        leads = rank is not None and rank.rank in (1, None) and rank.versus_best is None
        stakes: Stakes = "figure" if leads else "conclusion"
        consequence = (
            "it leads its comparisons; only its own figure is a floor"
            if leads
            else ("its own figure is a floor; its ratios, measured side by side, are its server's")
        )
        out.append(Caveat(stakes, f"{f.label}, {f.scenario}: {f.limit}-limited — {LIMIT_MEANING[f.limit]}; "
                          f"{consequence}."))  # fmt: skip
    return out


def point_caveats(bundle: Bundle, figs: Sequence[Figures]) -> list[Caveat]:
    out = []
    for f in figs:
        where = f"{f.label}, {f.scenario}" + (f" at {f.offered:,.0f} requests/s" if f.offered else "")
        if f.failed and not f.ok:  # nothing left of the point: it is missing from every table and comparison
            out.append(Caveat("conclusion", f"{where}: every repeat ({f.failed}) failed, so it has no figure at all."))
        elif f.failed:
            out.append(Caveat("figure", f"{where}: {f.failed} failed repeat(s), left out of every figure."))
        if f.errors:
            out.append(Caveat("figure", f"{where}: {f.errors} wrong or failed answers (not counted as RPS)."))
    out += [Caveat("figure", f"Skipped {s.key} {s.scenario}: {s.reason}") for s in bundle.manifest.skipped]
    if unsteady := [f for f in figs if f.unsteady]:
        out.append(Caveat("low", f"{sum(f.unsteady for f in unsteady)} unsteady repeat(s) on {len(unsteady)} point(s):"
                          " a quarter-second below 80% of the window's median quarter (the machine or the server "
                          "paused); they count in every figure (the full table's `unsteady` column)."))  # fmt: skip
    if rerun := [f for f in figs if f.disturbed]:
        out.append(Caveat("low", f"{sum(f.disturbed for f in rerun)} repeat(s) on {len(rerun)} point(s) were measured "
                          "again after steal or other work disturbed them (the `re-run` column)."))  # fmt: skip
    if bundle.calibration is None:
        out.append(Caveat("low", "No calibration in this run: the charts have no load-generator ceiling."))
    return out


def caveats(bundle: Bundle, figs: Sequence[Figures], said: Sequence[Stated], ranked: Sequence[Ranking],
            shared: tuple[int, ...]) -> list[Caveat]:  # fmt: skip
    found = [*run_caveats(bundle, said), *limit_caveats(figs, said, ranked, shared), *point_caveats(bundle, figs)]
    return sorted(found, key=lambda c: ORDER.index(c.stakes))
