"""The stop test's chart (lab/lifecycle.py): one stop per server, its answers per 10 ms by outcome around SIGTERM.

Read from the bundle's stop records only; one panel per server, the same x axis (seconds from SIGTERM) in each.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lab.bundle import StopTest
from loadtests.stopping import BUCKET, OUTCOMES

matplotlib.rcParams["svg.fonttype"] = "none"
matplotlib.rcParams["svg.hashsalt"] = "asgi-bench-lab"
COLOURS = {
    "ok": "#4c9a2a",
    "error": "#d62728",
    "reset": "#9467bd",
    "closed": "#ff7f0e",
    "refused": "#7f7f7f",
    "never_sent": "#bcbd22",
    "timeout": "#000000",
}
DPI = 110


def shown(stops: list[StopTest]) -> list[StopTest]:
    """One stop per server: the first stop of its first cell (by key), with the lab's timeout where there is one."""
    chosen: dict[str, StopTest] = {}
    for s in sorted(stops, key=lambda s: (s.graceful != "lab", s.key, s.number)):
        chosen.setdefault(s.cell.server, s)
    return [chosen[name] for name in sorted(chosen)]


def draw_timeline(stops: list[StopTest], out: Path) -> tuple[Path, ...]:
    picked = shown(stops)
    if not picked:
        return ()
    out.mkdir(parents=True, exist_ok=True)
    end = max(
        max(max(len(v) for v in s.load.timeline.values()) * BUCKET + s.load.timeline_start, (s.exit_after or 0) + 0.05)
        for s in picked
    )
    fig, axes = plt.subplots(len(picked), 1, figsize=(10, 2.2 * len(picked) + 0.8), sharex=True, squeeze=False)
    for ax, stop in zip(axes[:, 0], picked, strict=True):
        load = stop.load
        buckets = max(len(v) for v in load.timeline.values())
        x = load.timeline_start + BUCKET * np.arange(buckets)
        bottom = np.zeros(buckets)
        for outcome in OUTCOMES:
            counts = np.array(load.timeline.get(outcome, [0] * buckets), dtype=float)
            if counts.any():
                ax.bar(x, counts, width=BUCKET, bottom=bottom, align="edge", color=COLOURS[outcome], label=outcome)
                bottom += counts
        ax.axvline(0, color="black", linewidth=1)
        exit_after = stop.exit_after
        if exit_after is not None:
            ax.axvline(exit_after, color="black", linestyle="--", linewidth=1)
        said = "killed" if exit_after is None else f"exit {stop.server.exit_code} at {exit_after:.2f} s"
        ax.set_title(
            f"{stop.key} ({stop.graceful} timeout): {load.scheduled} requests at {load.rate:.0f}/s, lost {stop.lost}, "
            f"{said}",
            fontsize=9,
            loc="left",
        )
        ax.set_ylabel(f"per {BUCKET * 1000:g} ms", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes[-1, 0].set_xlim(-0.3, end)
    axes[-1, 0].set_xlabel("seconds from SIGTERM (solid line); dashed: the server's exit")
    fig.suptitle("Stopping under load: what ended each request, when", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.88, 0.97))
    paths = (out / "stops-timeline.png", out / "stops-timeline.svg")
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1], metadata={"Date": None})
    plt.close(fig)
    return paths
