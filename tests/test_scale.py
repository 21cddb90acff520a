"""Bigger machines, faked: with more than 2 CPUs the server gets the first half and each preset cell runs with one
worker per server CPU beside its one-worker twin; on 2 CPUs nothing changes."""

from __future__ import annotations

import pytest

from core import host
from lab import config, scale
from servers.matrix import load


@pytest.mark.parametrize(
    ("cpus", "server", "workers", "said"),
    [
        (2, [0], [1], "1 worker per server"),
        (4, [0, 1], [1, 2], "2 workers (one per server CPU) beside 1 worker for comparison, with 4 CPUs in all"),
        (8, [0, 1, 2, 3], [1, 2], "2 workers (the matrix's most, for 4 CPUs) beside 1 worker"),
    ],
)
def test_the_server_cpus_and_workers_follow_the_machine(
    monkeypatch: pytest.MonkeyPatch, cpus: int, server: list[int], workers: list[int], said: str
) -> None:
    monkeypatch.setattr(host, "machine_cpus", lambda: tuple(range(cpus)))
    matrix = load()
    run = config.parse(["--preset", "quick"], matrix)
    assert run.server_cpus == server and run.load_cpus == list(range(len(server), cpus))
    assert sorted({c.workers for c in run.cells}) == workers
    assert sum(c.workers == 1 for c in run.cells) == len(matrix.preset("quick").cells)  # every one-worker cell kept
    assert said in scale.how(run.server_cpus, run.cells, cpus)
    named = config.parse(["--cell", "granian-uvloop-hyper-w1-raw"], matrix)  # cells named: as named
    assert [c.workers for c in named.cells] == [1]


def test_the_headline_compares_multi_worker_cells_with_one_worker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lab.analysis.analyze import analyze
    from lab.bundle import load_bundle
    from lab.report import findings
    from tests.synthetic import make_bundle

    one, two = "granian-uvloop-hyper-w1-raw", "granian-uvloop-hyper-w2-raw"
    root = make_bundle(tmp_path, {(one, "plaintext", 0): [10_000] * 3, (two, "plaintext", 0): [18_000] * 3})
    lines = findings.headline(analyze(load_bundle(root), load()))
    (said,) = [line for line in lines if line.startswith("workers — ")]
    assert "plaintext 2 workers vs 1: 1.8x" in said
