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
class GroupVisit:
    """One round of one group: its cells' servers started together (in `started` order: the first on the run's port,
    each next one on the next port), and on them one side-by-side window per scenario, loaded in `cells`' order."""

    key: str  # the group's name
    cells: tuple[Cell, ...]
    number: int
    started: tuple[Cell, ...]
    work: tuple[Work, ...]


def ab_groups(config: RunConfig, matrix: Matrix) -> dict[str, tuple[Cell, ...]]:
    """An A/B run's groups: each cell measured in both variants, A first (the group's name: the cell's key)."""
    pair = config.ab_pair
    if pair is None:
        return {}
    bases = list(dict.fromkeys(c.base for c in config.cells if c.variant in pair))
    found = {}
    for base in bases:
        a, b = (base.model_copy(update={"variant": v}) for v in pair)
        if all(c in config.cells for c in (a, b)):
            found[base.key] = (a, b)
    return found


def group_rounds(config: RunConfig, matrix: Matrix, run_id: str) -> list[list[GroupVisit]]:
    """The side-by-side rounds: every group measured once per round, in a new random order each round; the order in
    which its servers start (and so which takes the run's port) is drawn per visit, so no cell always has it."""
    groups = ab_groups(config, matrix)
    if not config.pair_rounds or not groups:
        return []
    rounds = []
    for number in range(1, config.pair_rounds + 1):
        draw = random.Random(f"{run_id}/pairs/{number}")
        order = list(groups)
        draw.shuffle(order)
        visits = []
        for key in order:
            cells = groups[key]
            scenarios = [s for s in config.scenarios_of(cells[0], matrix) if matrix.scenario(s).method != "WS"]
            started = cells if draw.choice(("A", "B")) == "A" else tuple(reversed(cells))
            if scenarios:
                work = tuple(Work(s, 0.0, number, config.warmup, config.pair_seconds) for s in scenarios)
                visits.append(GroupVisit(key, cells, number, started, work))
        rounds.append(visits)
    return rounds
