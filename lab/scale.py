"""Bigger machines: with more than 2 CPUs the server gets the first half of them by default (core/host.py:
plan_cpus), and a preset's one-worker cells run again with one worker per server CPU, beside the one-worker cell
for comparison — as many workers as the matrix offers up to that count (its `workers` axis).
"""

from __future__ import annotations

from servers.matrix import Cell, Matrix


def workers_for(server_cpus: tuple[int, ...] | list[int], matrix: Matrix) -> int:
    """The worker count of the multi-worker cells: one per server CPU, or the most the matrix offers below that."""
    offered = [w for w in matrix.workers if 1 < w <= len(server_cpus)]
    return max(offered, default=1)


def multi_worker(cells: list[Cell], server_cpus: tuple[int, ...] | list[int], matrix: Matrix) -> list[Cell]:
    """The preset's cells, each one-worker cell followed by its multi-worker twin (when the server has the CPUs and
    the matrix allows the twin)."""
    count = workers_for(server_cpus, matrix)
    if count == 1:
        return cells
    found: list[Cell] = []
    for cell in cells:
        found.append(cell)
        if cell.workers == 1:
            twin = cell.model_copy(update={"workers": count})
            if matrix.invalid_reason(twin) is None:
                found.append(twin)
    return list(dict.fromkeys(found))


def how(server_cpus: list[int], cells: list[Cell], cpus: int) -> str:
    """How the run chose its workers, for the first progress line."""
    counts = sorted({c.workers for c in cells})
    if counts == [1]:
        return "1 worker per server (a machine of 2 CPUs or fewer, or the cells named)"
    many = max(counts)
    per_cpu = "one per server CPU" if many == len(server_cpus) else f"the matrix's most, for {len(server_cpus)} CPUs"
    return f"{many} workers ({per_cpu}) beside 1 worker for comparison, with {cpus} CPUs in all"
