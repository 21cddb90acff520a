"""The stops' and restarts' tables and pages: the "Stopping under load" table, each outcome's stability, one line
per stop, lifecycle.md and restarts.md (lab/analysis/stops.py reads the stops per server)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.analysis.stops import by_server
from lab.bundle import RestartTest, StopTest
from lab.lifecycle.stops import RestartPlan, StopPlan
from loadtests.stopping import LOST, OUTCOMES


def spread(values: list[float | None], unit: str = "s") -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    low, high = min(known), max(known)
    text = f"{low:.2f}" if abs(high - low) < 0.005 else f"{low:.2f}-{high:.2f}"
    return text + f" {unit}" + (f" ({len(values) - len(known)} killed)" if len(known) < len(values) else "")


COLUMNS = (
    "server", "graceful timeout", "stops", "scheduled", "lost (per stop)", "of them due before SIGTERM", "refused",
    "drain: SIGTERM → last answer",
    "SIGTERM → exit", "exit codes", "lifespan shutdown ran / completed", "killed", "left behind",
)  # fmt: skip


def rows(stops: list[StopTest]) -> list[list[str]]:
    """The "Stopping under load" table: one row per server and graceful setting, in COLUMNS."""
    found = []
    for s in by_server(stops):
        codes = ", ".join(f"{code} ×{n}" for code, n in s.exit_codes.items())
        lost = f"{sum(s.lost)} ({min(s.lost)}-{max(s.lost)})" if s.lost else "-"
        found.append([
            s.server, s.graceful, str(s.stops), str(s.scheduled), lost, str(sum(s.lost_before)),
            str(s.outcomes["refused"]),
            spread(list(s.drain)), spread(s.exit_after), codes,
            f"{s.shutdown_ran}/{s.stops} / {s.shutdown_completed}/{s.stops}", str(s.killed), str(s.leftovers),
        ])  # fmt: skip
    return found


def markdown(columns: Sequence[str], found: list[list[str]]) -> list[str]:
    """A table as Markdown lines."""
    head = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return [*head, *("| " + " | ".join(row) + " |" for row in found)]


def table(stops: list[StopTest]) -> list[str]:
    """The table as Markdown lines."""
    return markdown(COLUMNS, rows(stops))


def outcome_line(stop: StopTest) -> str:
    counted = ", ".join(f"{o} {n}" for o, n in stop.load.outcomes.items() if n)
    exit_after = stop.exit_after
    exited = "killed" if exit_after is None else f"exit {stop.server.exit_code} after {exit_after:.2f} s"
    lifespan = "completed" if stop.server.shutdown_completed else "ran" if stop.server.shutdown_ran else "not run"
    return (
        f"{stop.key} stop {stop.number} ({stop.graceful}): {stop.load.scheduled} scheduled at "
        f"{stop.load.rate:.0f}/s: {counted}; lost {stop.lost} ({stop.load.lost_before} due before SIGTERM); "
        f"{exited}; lifespan shutdown {lifespan}"
        + "".join(f"; still running after the exit: {line}" for line in stop.server.leftover_cmdlines)
    )


def stability(stops: list[StopTest]) -> list[str]:
    """Per server: each outcome, and the losses due before SIGTERM, as stable (in every stop, or in none) or varying
    (in some stops only), with its count per stop (the counts scale with each cell's rate)."""
    lines = []
    for s in by_server(stops):
        group = [x for x in stops if x.cell.server == s.server and x.graceful == s.graceful]
        measures = {o: [x.load.outcomes[o] for x in group] for o in OUTCOMES}
        measures["lost due before SIGTERM"] = [x.load.lost_before for x in group]
        measures["in flight at SIGTERM, not ok"] = [sum(x.load.in_flight.values()) - x.load.in_flight["ok"]
                                                    for x in group]  # fmt: skip
        said = []
        for name, values in measures.items():
            seen = sum(v > 0 for v in values)
            if seen in (0, len(values)):
                kind = "never (stable)" if seen == 0 else "in every stop (stable)"
            else:
                kind = f"in {seen} of {len(values)} stops (varies)"
            said.append(f"{name}: {kind}" + (f", {min(values)}-{max(values)} per stop" if seen else ""))
        lines.append(f"- {s.server} ({s.graceful} timeout, {s.stops} stops): " + "; ".join(said))
    return lines


def write_outputs(root: Path, stops: list[StopTest]) -> list[Path]:
    """lifecycle.md (the table, each outcome's stability, one line per stop) and the timeline chart, in `root`."""
    from lab.report.stop_charts import draw_timeline

    charts = draw_timeline(stops, root / "charts")
    lines = ["# Stopping under load", "", StopPlan().describe() + ".", "", *table(stops), "",
             "Per server: which outcomes came in every stop or in none (stable) and which in some only (varies).", "",
             *stability(stops), ""]  # fmt: skip
    if charts:
        lines += [f"![One stop per server]({charts[0].relative_to(root)})", ""]
    lines += ["## Every stop", "", *(f"- {outcome_line(s)}" for s in sorted(stops, key=lambda s: (s.key, s.number)))]
    (root / "lifecycle.md").write_text("\n".join(lines) + "\n")
    return [root / "lifecycle.md", *charts]


# --- what the restarts of one server say -------------------------------------------------------------------------

RESTART_COLUMNS = (
    "server", "cells", "restarts", "scheduled", "lost (per restart)", "of them in flight at the signal", "refused",
    "longest gap (before the signal)", "back to rate", "signal → new workers serve, old gone",
    "workers replaced", "served after", "stopped cleanly",
)  # fmt: skip


def restart_rows(restarts: list[RestartTest]) -> list[list[str]]:
    """The "Restarting under load" table: one row per server and graceful setting, in RESTART_COLUMNS."""
    groups: dict[tuple[str, str], list[RestartTest]] = {}
    for r in restarts:
        groups.setdefault((r.cell.server, r.graceful), []).append(r)
    found = []
    for (server, _), group in sorted(groups.items()):
        n = len(group)
        lost = [r.lost for r in group]
        sent_before = [sum(r.load.in_flight[o] for o in LOST) for r in group]
        gaps = [r.load.service.longest_gap for r in group if r.load.service]
        normal = [r.load.service.longest_gap_before for r in group if r.load.service]
        back = [r.load.service.recovered for r in group if r.load.service]
        done = [None if r.server.done_at is None else r.server.done_at - r.server.signal_at for r in group]
        found.append([
            server, ", ".join(sorted({r.key for r in group})), str(n), f"{sum(r.load.scheduled for r in group):,}",
            f"{sum(lost)} ({min(lost)}-{max(lost)})", str(sum(sent_before)),
            str(sum(r.load.outcomes["refused"] for r in group)),
            f"{spread(list(gaps))} ({spread(list(normal))})", spread(back).replace("killed", "never"),
            spread(done).replace("killed", "not seen"),
            f"{sum(r.server.replaced for r in group)}/{n}", f"{sum(r.capacity_after > 0 for r in group)}/{n}",
            f"{sum(r.stopped_cleanly for r in group)}/{n}",
        ])  # fmt: skip
    return found


def restart_table(restarts: list[RestartTest]) -> list[str]:
    return markdown(RESTART_COLUMNS, restart_rows(restarts))


def restart_line(r: RestartTest) -> str:
    counted = ", ".join(f"{o} {n}" for o, n in r.load.outcomes.items() if n)
    service = r.load.service
    done = "not seen done" if r.server.done_at is None else f"done {r.server.done_at - r.server.signal_at:.2f} s"
    gap = f"longest gap {service.longest_gap:.3f} s from {service.gap_from:+.3f} s" if service else ""
    back = "" if service is None else "never back to rate" if service.recovered is None else \
        f"back to rate {service.recovered:.2f} s"  # fmt: skip
    return (
        f"{r.key} restart {r.number} ({r.server.signal}): {r.load.scheduled} scheduled at {r.load.rate:.0f}/s: "
        f"{counted}; lost {r.lost}; {done} after the signal, workers {r.server.old_workers} -> "
        f"{r.server.new_workers}; {gap}; {back}; {r.capacity_after:.0f}/s after (before {r.capacity:.0f}/s); "
        f"stop: exit {r.exit_code}"
    )


def write_restart_outputs(root: Path, restarts: list[RestartTest]) -> list[Path]:
    """restarts.md in `root`: the table and one line per restart."""
    lines = ["# Restarting under load", "", RestartPlan().describe() + ".", "", *restart_table(restarts), "",
             "## Every restart", "",
             *(f"- {restart_line(r)}" for r in sorted(restarts, key=lambda r: (r.key, r.number)))]  # fmt: skip
    (root / "restarts.md").write_text("\n".join(lines) + "\n")
    return [root / "restarts.md"]
