"""The runner and the result bundle, end to end in local mode."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.host import ROOT, atomic_write, free_port
from lab import bundle
from servers.matrix import MATRIX_FILE, load

CELLS = ["uvicorn-uvloop-httptools-w1-raw", "granian-uvloop-hyper-w1-raw"]
SHORT = ["--scenario", "plaintext", "--repeats", "2", "--duration", "1", "--warmup", "0.5", "--users", "16"]


def lab_run(*args: str, results: Path, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab", "run", "--results", str(results), "--port", str(free_port(count=8)), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def only_run(results: Path) -> Path:
    runs = [p for p in results.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_a_quick_matrix_end_to_end_interrupted_and_resumed(tmp_path: Path) -> None:
    """The calibration, every phase of a run with a sweep (side by side, alone, swept), the referee on each closed
    point, every repeat judged and costed; Ctrl-C after its first side-by-side round stops the servers and exits 130,
    and the resume finishes the run without redoing finished work (one run for both: each is ~40 s of the suite)."""
    args = [*SHORT, "--referee-seconds", "1", "--sweep-seconds", "0.5", "--rate", "300"]
    cells = [a for c in CELLS for a in ("--cell", c)]
    command = [sys.executable, "-m", "lab", "run", "--results", str(tmp_path), "--port", str(free_port(count=8))]
    with (tmp_path.parent / f"{tmp_path.name}.stderr").open("w") as log:
        proc = subprocess.Popen([*command, *cells, *args], cwd=ROOT, stderr=log)
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("*/groups/*.json")):  # mid-group: the first of three side-by-side rounds
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    run_dir = only_run(tmp_path)
    interrupted = bundle.load_bundle(run_dir)
    assert interrupted.manifest.status == "interrupted" and interrupted.calibration
    first = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.glob("*/*.json") if p.parent.name != "logs"}
    assert 1 <= len(interrupted.groups) < 3 and not interrupted.repeats
    for port in interrupted.manifest.config.ports:  # both servers were stopped
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0

    done = lab_run("--resume", run_dir.name, results=tmp_path)
    assert done.returncode == 0, done.stderr
    for name, content in first.items():
        assert (run_dir / name).read_bytes() == content  # finished work was skipped, not redone
    assert not list(run_dir.rglob("*.tmp"))
    result = bundle.load_bundle(run_dir)
    assert result.manifest.status == "complete" and result.failures == []
    assert [p.status for p in result.manifest.parts] == ["interrupted", "complete"]
    assert result.calibration and [p.scenario for p in result.calibration.points] == ["plaintext"]
    closed = [r for r in result.repeats if not r.offered_rps]
    swept = [r for r in result.repeats if r.offered_rps]
    assert sorted({r.key for r in closed}) == sorted(CELLS) and len(closed) == 4 and len(swept) == 2
    assert {tuple(sorted(r)) for r in result.manifest.rounds} == {tuple(sorted(CELLS))}
    speed = result.manifest.speed  # timed at each part's start, at each round and at the sweep; the index: the median
    assert speed and len(speed.server_samples) == len(speed.load_samples) >= len(result.manifest.rounds) + 2
    assert speed.server_ops == statistics.median(speed.server_samples) > 0
    for r in swept:
        assert r.ok and r.load.model == "open" and r.verdict.limit == "offered" and r.load.send_lateness.count > 0
    if shutil.which("wrk"):
        assert all(r.referee and r.referee.rps > 0 and r.referee_cost for r in closed if r.repeat == 1)
        assert all(len(r.conditions.referee_speed) >= 5 for r in closed if r.repeat == 1)  # wrk's CPU speed
    # the speedometer's samples of the server CPU: in every throughput window, never in the sweep's
    assert all(len(r.conditions.speed_samples) >= 5 for r in closed)
    assert all(not r.conditions.speed_samples and not r.conditions.referee_speed for r in swept)
    for r in closed:
        assert r.verdict.limit in ("server", "client", "unclear") and r.verdict.reason
        assert r.cost.server_us > 0 and r.cost.client_us > 0 and r.conditions is not None
        p = r.load.latency.percentiles_us
        assert r.load.rps > 0 and r.load.errors == {} and r.load.ok == r.load.latency.count > 0
        assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= r.load.latency.max_us
        assert r.load.load_generator.cpus == [1] and r.server.cpus == [0]
        assert r.server.cpu_cores > 0 and r.server.rss_peak_bytes > 0 and r.server.startup_seconds > 0
    assert result.manifest.machine.logical_cpus >= 1 and result.manifest.versions["locust"]
    rows = (result.root / "summary.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("key,server,loop")
    assert sorted(g.round for g in result.groups) == [1, 2, 3] and all(g.ok for g in result.groups)
    assert "[9/9]" in done.stderr  # progress lines: 3 side-by-side rounds, 4 repeats alone, 2 swept
    assert "results in" in done.stderr.strip().splitlines()[-1]  # the outcome is the last line


def test_a_failing_cell_is_recorded_and_the_matrix_goes_on(tmp_path: Path) -> None:
    matrix = MATRIX_FILE.read_text().replace(
        "[apps.starlette]", '[apps.broken]\ntarget = "tests.broken_app:no_such_app"\npackages = []\n[apps.starlette]'
    )
    (tmp_path / "matrix.toml").write_text(matrix)
    env = dict(os.environ, LAB_MATRIX=str(tmp_path / "matrix.toml"))
    broken, good = "uvicorn-uvloop-httptools-w1-broken", CELLS[0]
    done = lab_run("--cell", broken, "--cell", good, *SHORT, "--no-calibrate", results=tmp_path / "r", env=env)
    assert done.returncode == 1, done.stderr
    result = bundle.load_bundle(only_run(tmp_path / "r"))
    assert [f.key for f in result.failures] == [broken] and result.failures[0].phase == "start"
    assert "no_such_app" in result.failures[0].log_tail
    assert result.manifest.failures == [broken]
    assert {r.key for r in result.repeats} == {good}
    assert "failed: start" in (result.root / "summary.csv").read_text()


# --- the bundle contract ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_repeat(tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = tmp_path_factory.mktemp("bundle")
    done = lab_run("--cell", CELLS[1], *SHORT, "--repeats", "1", "--no-calibrate", results=results)
    assert done.returncode == 0, done.stderr
    return json.loads(next((only_run(results) / "runs").glob("*.json")).read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["load"].pop("rps"), "load.rps: Field required"),
        (lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted"),
        (lambda d: d["load"].update(rps="fast"), "load.rps: Input should be a valid number"),
        (lambda d: d["load"].update(ok=1.5), "load.ok: Input should be a valid integer"),
        (lambda d: d["load"]["latency"].pop("hdr"), "load.latency.hdr: Field required"),
        (lambda d: d.update(schema_version=9), "schema_version 9; this lab reads schema_version 2"),
        (lambda d: d.update(kind="manifest"), "kind 'manifest', expected 'repeat'"),
    ],
)
def test_the_loader_names_a_bad_field(tmp_path: Path, sample_repeat: dict, change, message: str) -> None:
    bad = json.loads(json.dumps(sample_repeat))
    change(bad)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(bundle.BundleError) as excinfo:
        bundle.read_model(path, "repeat")
    assert message in str(excinfo.value) and str(path) in str(excinfo.value)


def test_an_atomic_write_leaves_no_half_file(tmp_path: Path, sample_repeat: dict) -> None:
    target = tmp_path / "x.json"
    atomic_write(target, '{"v": 1}')
    with pytest.raises(TypeError):
        atomic_write(target, object())  # type: ignore[arg-type]  # fails before anything is written
    broken = bundle.Repeat.model_validate_json(json.dumps(sample_repeat)).model_copy(
        update={"repeat": "one"}
    )  # a bug's record
    with pytest.raises(bundle.BundleError), pytest.warns(UserWarning, match="serialized value may not be"):
        bundle.write_record(tmp_path / "y.json", broken)  # invalid: never written
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_run_ids_are_unique_and_never_reuse_a_directory(tmp_path: Path) -> None:
    from lab.run.ledger import new_run_dir

    first, second = new_run_dir(tmp_path), new_run_dir(tmp_path)
    assert first != second and first.exists() and second.exists()


def test_the_matrix_can_come_from_lab_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.toml").write_text(
        MATRIX_FILE.read_text().replace(
            'cell = "granian-uvloop-hyper-w1-raw"', 'cell = "uvicorn-uvloop-httptools-w1-raw"'
        )
    )
    monkeypatch.setenv("LAB_MATRIX", str(tmp_path / "m.toml"))
    assert load().calibration[0].server == "uvicorn"
