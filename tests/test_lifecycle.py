"""Stopping under load (lab/lifecycle.py, loadtests/stopping.py): every scheduled request gets one outcome and the
counts add up; a clean server loses nothing; the fault apps' outcomes are counted as what they are; a server that
does not stop is killed and recorded, with nothing left behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.host import free_port
from lab.bundle import StopTest
from lab.lifecycle.stops import Bench, RestartPlan, StopPlan, restart_once, stop_once
from lab.report.stops import restart_table, table
from loadtests import scenarios
from loadtests.stopping import OUTCOMES, StopClient, service
from servers.local import LocalTargets
from servers.matrix import MATRIX_FILE, Matrix, load

CELL = "uvicorn-asyncio-h11-w1-{app}"
QUICK = StopPlan(fraction=0.3, max_rate=400, long_ms=300, long_share=0.1, idle=2, before=0.6, after=0.3)
QUICK_RESTART = RestartPlan(fraction=0.3, max_rate=400, long_ms=300, long_share=0.1, idle=2, before=0.6, settle=0.5,
                            longest=10)  # fmt: skip


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    """The matrix with the fault apps beside the real ones, and short stop timeouts (1 s graceful, killed at 2 s)."""
    apps = "".join(f'[apps.{n}]\ntarget = "tests.fault_app:{n}"\npackages = []\n' for n in ("deaf", "stuck", "drops"))
    text = MATRIX_FILE.read_text().replace("[apps.starlette]", apps + "[apps.starlette]")
    text = text.replace("graceful_timeout = 5\nkill_after = 12", "graceful_timeout = 1\nkill_after = 2")
    path = tmp_path_factory.mktemp("matrix") / "matrix.toml"
    path.write_text(text)
    return load(path)


def loopback() -> scenarios.Target:
    return scenarios.Target("127.0.0.1", free_port())


def stop(matrix: Matrix, tmp_path: Path, app: str) -> StopTest:
    targets = LocalTargets(tmp_path, matrix=matrix)
    record = stop_once(
        Bench(targets, matrix, loopback(), "t"), matrix.cell_from_key(CELL.format(app=app)), 1, plan=QUICK
    )
    assert sum(record.load.outcomes.values()) == record.load.scheduled > 0
    assert set(record.load.outcomes) == set(OUTCOMES)
    assert record.server.leftovers == 0 and not record.server.still_listening
    return record


def test_every_request_has_one_outcome_when_nothing_listens() -> None:
    port = free_port()  # closed again: connects are refused
    target = scenarios.Target("127.0.0.1", port)
    m = load()
    short = scenarios.plan(m.scenario("plaintext"), target)
    client = StopClient(target, short, short, 200, 0.0, time.time() + 0.3, before=0.3, after=0.2, idle=0)
    result = client.run()
    assert result.scheduled > 0 and result.outcomes["refused"] == result.scheduled
    assert sum(result.outcomes.values()) == result.scheduled
    assert sum(sum(v) for v in result.timeline.values()) == result.scheduled


def test_a_clean_server_loses_nothing(matrix: Matrix, tmp_path: Path) -> None:
    record = stop(matrix, tmp_path, "raw")
    load_, server = record.load, record.server
    assert load_.lost_before == 0, load_.outcomes  # what came after SIGTERM may meet a closing connection
    assert load_.in_flight["ok"] == sum(load_.in_flight.values()) > 0  # what was in flight at SIGTERM was answered
    assert len(load_.in_flight_ms) == load_.in_flight["ok"]
    assert load_.long["ok"] > 0 and load_.last_answer is not None and load_.last_answer > 0
    assert not server.killed and server.exit_code == 0 and server.shutdown_completed
    assert server.graceful_flag == ["--timeout-graceful-shutdown", "1"]
    assert all(t is not None for t in load_.idle_closed)  # uvicorn closes idle keep-alive connections at once
    assert "| uvicorn | lab | 1 |" in table([record])[2]


def test_a_server_that_ignores_sigterm_is_killed_and_recorded(matrix: Matrix, tmp_path: Path) -> None:
    record = stop(matrix, tmp_path, "deaf")
    assert record.server.killed and record.server.exit_code == -9 and record.exit_after is None
    assert not record.server.shutdown_ran
    assert record.load.outcomes["refused"] == 0  # it kept serving after SIGTERM
    assert record.load.outcomes["ok"] == record.load.scheduled


def test_a_lifespan_shutdown_that_hangs_is_seen_as_begun_not_completed(matrix: Matrix, tmp_path: Path) -> None:
    record = stop(matrix, tmp_path, "stuck")
    assert record.server.shutdown_ran and not record.server.shutdown_completed
    assert record.server.killed  # uvicorn waits for the lifespan shutdown with no timeout
    assert record.load.lost_before == 0


def test_connections_dropped_halfway_are_counted_as_closed(matrix: Matrix, tmp_path: Path) -> None:
    record = stop(matrix, tmp_path, "drops")
    long_sent = sum(record.load.long.values()) - record.load.long["refused"] - record.load.long["never_sent"]
    assert record.load.long["closed"] == long_sent > 0
    # a short request due after SIGTERM may still meet a keep-alive connection as uvicorn closes it
    assert record.load.short["closed"] <= record.load.due_after["closed"] and record.load.short["ok"] > 0
    assert record.server.shutdown_completed and not record.server.killed


@contextlib.contextmanager
def agent_running(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The target agent on a free port: its URL and the environment that names its secret."""
    from core.host import ROOT
    from tests.test_remote import wait_http

    agent_port = free_port()
    env = {**os.environ, "LAB_AGENT_SECRET_FILE": str(tmp_path / "agent-secret")}  # the agent makes it
    agent = subprocess.Popen(
        [sys.executable, "-m", "servers.agent", "--port", str(agent_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),
    )  # on the server CPU, as compose's cpuset
    try:
        wait_http(f"http://127.0.0.1:{agent_port}/health", secret_file=tmp_path / "agent-secret")
        yield f"http://127.0.0.1:{agent_port}", env
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def lifecycle(tmp_path: Path, key: str, *more: str) -> subprocess.CompletedProcess[str]:
    """`python -m lab lifecycle` on one cell, once, through the agent."""
    from core.host import ROOT

    with agent_running(tmp_path) as (url, env):
        return subprocess.run(
            [sys.executable, "-m", "lab", "lifecycle", "--cell", key, "--stops", "1", "--port", str(free_port(count=8)),
             "--server-agent", url, "--out", str(tmp_path), *more],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip


def test_the_lifecycle_command_stops_a_cell_through_the_agent(tmp_path: Path) -> None:
    from lab import bundle

    run = lifecycle(tmp_path, CELL.format(app="raw"))
    assert run.returncode == 0, run.stderr
    record = bundle.read_model(bundle.stop_path(tmp_path, CELL.format(app="raw"), "lab", 1), "stop")
    assert sum(record.load.outcomes.values()) == record.load.scheduled > 0
    assert record.server.shutdown_completed and record.server.exit_code == 0
    assert "| uvicorn | lab | 1 |" in run.stdout and (tmp_path / "lifecycle.md").exists()


def test_the_lifecycle_command_restarts_a_cell_through_the_agent(tmp_path: Path) -> None:
    from lab import bundle

    key = "hypercorn-asyncio-h11-w1-raw"
    run = lifecycle(tmp_path, key, "--restart")
    assert run.returncode == 0, run.stderr
    record = bundle.read_model(bundle.restart_path(tmp_path, key, "lab", 1), "restart")
    assert sum(record.load.outcomes.values()) == record.load.scheduled > 0
    assert record.server.replaced and record.capacity_after > 0 and record.stopped_cleanly
    assert f"| hypercorn | {key} | 1 |" in run.stdout and (tmp_path / "restarts.md").exists()


def test_the_gap_in_service_is_read_from_the_answers() -> None:
    before = [-1 + i / 100 for i in range(100)]  # 100/s before the signal
    after = [0.3 + i / 100 for i in range(170)]  # none for 0.3 s after it (from -0.01), then 100/s again until 2.0
    found = service(before + after, before=1.0, after=2.0)
    assert found.rate_before == 100 and abs(found.longest_gap - 0.31) < 1e-9 and found.gap_from == -0.01
    assert abs(found.longest_gap_before - 0.01) < 1e-9
    assert found.recovered == 0.34  # the last 100-ms window with fewer than 5 answers: [0.24, 0.34), 4
    assert service(before, before=1.0, after=2.0).recovered is None  # it never came back
    assert service(before + [i / 100 for i in range(200)], before=1.0, after=2.0).recovered == 0.0


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "granian"])
def test_a_restart_loses_no_account_replaces_the_workers_and_serves_after(
    matrix: Matrix, tmp_path: Path, server: str
) -> None:
    key = {"uvicorn": "uvicorn-asyncio-h11-w1-raw", "hypercorn": "hypercorn-asyncio-h11-w1-raw",
           "granian": "granian-asyncio-hyper-w1-raw"}[server]  # fmt: skip
    targets = LocalTargets(tmp_path, matrix=matrix)
    record = restart_once(Bench(targets, matrix, loopback(), "t"), matrix.cell_from_key(key), 1, plan=QUICK_RESTART)
    load_, restarted = record.load, record.server
    assert sum(load_.outcomes.values()) == load_.scheduled > 0
    assert record.cell.workers == matrix.servers[server].stop.restart_workers  # uvicorn: lifted to 2
    assert len(restarted.old_workers) == len(restarted.new_workers) == record.cell.workers
    assert not set(restarted.old_workers) & {p.pid for p in restarted.after}  # every old worker is gone
    assert restarted.replaced and restarted.main_alive and restarted.done_at is not None
    assert load_.due_after["ok"] > 0 and load_.after >= restarted.done_at - restarted.signal_at + 0.4
    assert record.capacity_after > 0 and record.stopped_cleanly, record.exit_code
    assert load_.service is not None and load_.service.longest_gap < load_.after
    assert f"| {server} | {record.key} | 1 |" in restart_table([record])[2]


def test_a_run_refuses_restarts() -> None:
    from lab import cli

    assert cli.main(["preflight", "--restart", "--cell", CELL.format(app="raw")]) == 2
