"""What a run measures and in which order, as typed work items: pure functions of the configuration, the matrix and
the run's id, so that a resumed run plans exactly what the first part planned and skips what its ledger holds.

A visit is one start of one cell's server; on it, each work item is one measured repeat (a warm-up, then a window).
Every round visits every cell in a new random order, seeded by the run and the round, so no cell is always measured
first, or always warmer; each visit starts the server afresh and every repeat has the same warm-up on its own
connections. The sweep visits every cell once, at each offered rate in ascending order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from lab.config import RunConfig
from lab.measure.window import Work
from servers.matrix import Cell, Matrix

SWEEP_WARMUP = 0.5  # seconds of load at a cell's first swept rate before its window opens


@dataclass(frozen=True)
class Visit:
    cell: Cell
    phase: Literal["round", "sweep"]
    work: tuple[Work, ...]


def round_order(run_id: str, number: int, cells: list[Cell]) -> list[Cell]:
    """A round's cell order: a shuffle seeded by the run and the round, so a resumed run keeps it."""
    order = list(cells)
    random.Random(f"{run_id}/{number}").shuffle(order)
    return order


def round_visits(config: RunConfig, matrix: Matrix, number: int, order: list[Cell]) -> list[Visit]:
    """One round: each cell of `order` once, with one repeat of each scenario it can run."""
    return [
        Visit(cell, "round", tuple(Work(s, 0.0, number, config.warmup, config.duration) for s in scenarios))
        for cell in order
        if (scenarios := config.scenarios_of(cell, matrix))
    ]


def plan(config: RunConfig, matrix: Matrix, run_id: str) -> list[list[Visit]]:
    """The throughput rounds, each a list of visits in its own order."""
    return [round_visits(config, matrix, n, round_order(run_id, n, config.cells)) for n in range(1, config.repeats + 1)]


@dataclass(frozen=True)
class Rates:
    """One scenario's offered rates: every cell runs `common`; a cell runs a `fast` rate when it can serve it."""

    common: list[float]
    fast: list[float]


def sweep_work(
    config: RunConfig, matrix: Matrix, cell: Cell, rates: dict[str, Rates], serves: dict[tuple[str, float], bool]
) -> tuple[Work, ...]:
    """A cell's sweep: each rate it runs, per scenario, the first one after a warm-up. `serves` says, per
    (scenario, fast rate), whether this cell's capacity reaches it."""
    work: list[Work] = []
    for scenario in config.scenarios_of(cell, matrix):
        chosen = rates.get(scenario)
        if chosen is None:
            continue
        mine = chosen.common + [r for r in chosen.fast if serves.get((scenario, r), False)]
        work += [
            Work(scenario, r, 1, SWEEP_WARMUP if i == 0 else 0.0, config.sweep_seconds) for i, r in enumerate(mine)
        ]
    return tuple(work)


def sweep_visits(
    config: RunConfig,
    matrix: Matrix,
    run_id: str,
    rates: dict[str, Rates],
    serves: dict[str, dict[tuple[str, float], bool]],
) -> list[Visit]:
    """The sweep: every cell once, in an order of its own (`serves`: cell key -> what its capacity reaches)."""
    visits = [
        Visit(cell, "sweep", sweep_work(config, matrix, cell, rates, serves.get(cell.key, {})))
        for cell in round_order(run_id, 0, config.cells)
    ]
    return [v for v in visits if v.work]


@dataclass(frozen=True)
class GroupWork:
    """One side-by-side window of a group visit: its scenario and timing, and the group's cells that run it."""

    work: Work
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class GroupVisit:
    """One round of one group: its cells' servers started together (in `started` order: the first on the run's port,
    each next one on the next port), and on them one side-by-side window per scenario, loaded in `cells`' order."""

    key: str  # the group's name
    cells: tuple[Cell, ...]
    number: int
    started: tuple[Cell, ...]
    work: tuple[GroupWork, ...]


def group_work(config: RunConfig, matrix: Matrix, cells: list[Cell], number: int) -> tuple[GroupWork, ...]:
    """A group's windows in one round: each of the run's scenarios that two of its cells or more run (a websocket
    scenario is no closed HTTP load)."""
    found = []
    for scenario in config.scenarios:
        mine = tuple(c for c in cells if scenario in config.scenarios_of(c, matrix))
        if len(mine) > 1 and matrix.scenario(scenario).method != "WS":
            found.append(GroupWork(Work(scenario, 0.0, number, config.warmup, config.pair_seconds), mine))
    return tuple(found)


def group_round(
    config: RunConfig, matrix: Matrix, run_id: str, number: int, keys: list[str] | None = None
) -> list[GroupVisit]:
    """One side-by-side round: every group (or those named) once, in a new random order; the order in which a
    group's servers start (and so which takes the run's port) is drawn per visit, so no cell always has it."""
    groups = config.groups()
    draw = random.Random(f"{run_id}/pairs/{number}")
    order = [k for k in groups if keys is None or k in keys]
    draw.shuffle(order)
    visits = []
    for key in order:
        cells = groups[key]
        started = list(cells)
        draw.shuffle(started)
        if work := group_work(config, matrix, cells, number):
            visits.append(GroupVisit(key, tuple(cells), number, tuple(started), work))
    return visits


def group_rounds(config: RunConfig, matrix: Matrix, run_id: str) -> list[list[GroupVisit]]:
    """The side-by-side rounds of the run."""
    return [group_round(config, matrix, run_id, n) for n in range(1, config.pair_rounds + 1)]
