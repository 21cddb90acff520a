"""A fault never becomes a number, and bad input never starts anything: the reliability suite.

Bad input: every kind in BAD_INPUTS exits 2 with one line naming the input, writes nothing and starts nothing.
Faults: each test below injects one kind (FAULT_KINDS names them) and checks that no wrong figure is recorded as good,
that no process is left running, and what the user is told.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from core.host import ROOT, free_port, machine_cpus
from lab import bundle
from loadtests.load import Load
from loadtests.local import run_once
from servers.matrix import MATRIX_FILE

GOOD = "uvicorn-asyncio-h11-w1-raw"
QUICK = ["--scenario", "plaintext", "--repeats", "1", "--duration", "1.5", "--warmup", "0.3", "--users", "8",
         "--referee-seconds", "0", "--no-calibrate", "--sweep-seconds", "0"]  # fmt: skip


def lab(*args: str, results: Path, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab", "run", "--results", str(results), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def with_faulty_apps(tmp: Path) -> dict[str, str]:
    """A matrix with the fault apps (tests/fault_app.py) beside the real ones."""
    apps = '[apps.dies]\ntarget = "tests.fault_app:dies"\npackages = []\n'
    apps += '[apps.hangs]\ntarget = "tests.fault_app:hangs"\npackages = []\n'
    apps += '[apps.broken]\ntarget = "tests.broken_app:app"\npackages = []\n'
    (tmp / "matrix.toml").write_text(MATRIX_FILE.read_text().replace("[apps.starlette]", apps + "[apps.starlette]"))
    return dict(os.environ, LAB_MATRIX=str(tmp / "matrix.toml"))


def only_run(results: Path) -> Path:
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    return run


def lab_processes() -> list[psutil.Process]:
    """Servers started by the launcher and Locust processes of this machine's lab (none may outlive a run)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        server = "--port" in line and ("uvicorn" in line or "granian" in line)
        if ("loadtests/locustfile.py" in line or server) and proc.pid != os.getpid():
            found.append(proc)
    return found


# --- bad input: exit 2, one line, nothing started, nothing written --------------------------------------------------

BAD_INPUTS = [
    (["--preset", "nightly"], "unknown preset 'nightly'"),
    (["--cell", "granian-uvloop-h11-w1-raw"], "unknown http 'h11' for granian"),
    (["--cell", "hypercorn-rloop-h11-w1-raw"], "no way to run on rloop"),
    (["--cell", "not-a-cell"], "is not SERVER-LOOP-HTTP-wN-APP"),
    (["--scenario", "grpc"], "unknown scenario 'grpc'"),
    (["--load-cpus", "64"], "names CPUs [64] this machine does not offer"),
    (["--server-cpus", "1", "--load-cpus", "1"], "overlap"),
    (["--server-cpus", "3-1"], "reversed range 3-1"),
    (["--server-cpus", ","], "is not like 1 or 0,2 or 2-3"),
    (["--server-cpus", "one"], "is not like 1 or 0,2 or 2-3"),
    (["--repeats", "0"], "--repeats 0 must be in 1-100"),
    (["--repeats", "-1"], "--repeats -1 must be in 1-100"),
    (["--repeats", "x"], "argument --repeats: invalid int value: 'x'"),
    (["--duration", "0"], "--duration 0.0 must be in [0.5, 3600]"),
    (["--duration", "nan"], "--duration nan must be in"),
    (["--duration", "inf"], "--duration inf must be in"),
    (["--duration", "1e9"], "--duration 1000000000.0 must be in"),
    (["--warmup", "-1"], "--warmup -1.0 must be in [0, 3600]"),
    (["--warmup", "1e9"], "--warmup 1000000000.0 must be in"),
    (["--users", "0"], "--users 0 must be in 1-10000"),
    (["--users", "100000"], "--users 100000 must be in 1-10000"),
    (["--load-workers", "0"], "--load-workers 0 must be at least 1"),
    (["--load-workers", "99"], "--load-workers 99 for load CPUs"),
    (["--port", "99999"], "--port 99999 is not a TCP port"),
    (["--port", "0"], "--port 0 is not a TCP port"),
    (["--port", "BUSY"], "server port 127.0.0.1:BUSY cannot be bound"),
    (["--rate", "-5", "--sweep-seconds", "1"], "give distinct offered rates in (0, 1e+06]"),
    (["--rate", "0", "--sweep-seconds", "1"], "give distinct offered rates"),
    (["--rate", "1e9", "--sweep-seconds", "1"], "give distinct offered rates"),
    (["--rate", "100", "--rate", "100", "--sweep-seconds", "1"], "give distinct offered rates"),
    (["--rate", "100", "--sweep-seconds", "0"], "--rate needs a sweep"),
    (["--sweep-seconds", "0.01"], "--sweep-seconds 0.01 must be 0 (no sweep) or at least 0.5"),
    (["--rate", "2", "--sweep-seconds", "1"], "--rate 2: a 1-s window would be offered 2 requests"),
    (["--referee-seconds", "0.5"], "--referee-seconds 0.5 must be 0 (no referee) or at least 1"),
    (["--sweep-seconds", "-1"], "--sweep-seconds -1.0 must be in"),
    (["--pair-rounds", "3", "--max-repeats", "2"], "--max-repeats 2 must be in 3-100"),
    (["--budget-minutes", "-1"], "--budget-minutes -1 must be in"),
    (["--arrivals", "weibull"], "argument --arrivals: invalid choice: 'weibull'"),
    (["--client", "wrk"], "argument --client: invalid choice: 'wrk'"),
    (["--max-connections", "10"], "--max-connections 10 must be in 64-65000"),
    (["--client", "stock", "--sweep-seconds", "2"], "only the lean client has"),
    (["--resume", "no-such-run"], "--resume 'no-such-run': no such run"),
    (["--resume", "last"], "--resume last: no unfinished run"),
]


@pytest.mark.parametrize(("args", "said"), BAD_INPUTS, ids=[" ".join(a)[:40] for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_nothing_more(tmp_path: Path, args: list[str], said: str) -> None:
    with socket.socket() as busy:  # "BUSY" stands for a port something listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        args, said = [a.replace("BUSY", port) for a in args], said.replace("BUSY", port)
        done = lab(*args, results=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("asgi-bench-lab: error:") and said in line, line
    assert "Traceback" not in done.stderr and not list(tmp_path.iterdir())


def test_a_results_path_that_is_a_file_or_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for results, said in ((blocker, "is a file, not a directory"), (blocker / "sub", "is not writable")):
        done = lab(results=results, timeout=60)
        assert done.returncode == 2 and said in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


def test_a_damaged_manifest_or_matrix_is_named(tmp_path: Path) -> None:
    run = tmp_path / "20260101T000000Z-abc"
    run.mkdir()
    (run / "manifest.json").write_text('{"schema_version": 2, "kind": "manifest", "run_id"')
    done = lab("--resume", run.name, results=tmp_path, timeout=60)
    assert done.returncode == 2 and "manifest.json: not JSON" in done.stderr and "Traceback" not in done.stderr
    bad = tmp_path / "matrix.toml"
    bad.write_text(
        MATRIX_FILE.read_text().replace('loop = "trio"\nreason', 'loop = "trio"\nweather = "fine"\nreason', 1)
    )
    done = lab(results=tmp_path / "r", env=dict(os.environ, LAB_MATRIX=str(bad)), timeout=60)
    said = "rules #1 (server = 'uvicorn', loop = 'trio', weather = 'fine'): unknown field 'weather'"
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    bad.write_text("schema = [")
    done = lab(results=tmp_path / "r", env=dict(os.environ, LAB_MATRIX=str(bad)), timeout=60)
    assert done.returncode == 2 and "cannot read the matrix file" in done.stderr and "Traceback" not in done.stderr


def test_bad_load_input_is_refused_too() -> None:
    for args, said in (
        (["--target", "http://127.0.0.1:abc"], "has no valid port"),
        (["--target", "http://10.1.2.3:8000"], "not a loopback address"),
        (["--target", "http://127.0.0.1:8000", "--scenario", "ws", "--param", "message_bytes=-1"], "whole number"),
        (["--target", "http://127.0.0.1:8000", "--scenario", "io", "--param", "ms=99999"], "outside the apps' range"),
        (["--target", "http://127.0.0.1:8000", "--processes", "0"], "--processes 0 must be at least 1"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "loadtests", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr


# --- faults: nothing wrong is recorded as good, nothing is left running ----------------------------------------------

FAULT_KINDS = [
    "server killed (kill -9) during a repeat",
    "server hung (SIGSTOP) during a repeat",
    "server dies before it is ready",
    "server gone before a repeat starts",
    "a Locust worker killed (kill -9) during a repeat",
    "the runner killed (kill -9)",
    "Ctrl-C while a server is being started or stopped",
    "a damaged calibration.json on resume",
    "a run already being run",
    "right body, wrong headers (text/html)",
    "websocket connections refused (dead port)",
    "a silent server (accepts, never answers)",
]


def test_a_server_that_dies_or_hangs_is_a_failure_and_the_matrix_goes_on(tmp_path: Path) -> None:
    env = with_faulty_apps(tmp_path)
    dies, hangs = "uvicorn-asyncio-h11-w1-dies", "uvicorn-asyncio-h11-w1-hangs"
    cells = [a for key in (dies, hangs, GOOD) for a in ("--cell", key)]
    started = time.monotonic()
    done = lab(*cells, *QUICK, "--port", str(free_port(count=8)), results=tmp_path / "r", env=env)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    result = bundle.load_bundle(only_run(tmp_path / "r"))
    failed = {r.key: r for r in result.repeats if not r.ok}
    assert "the server exited" in failed[dies].failure, failed[dies].failure
    assert "no correct answer" in failed[hangs].failure or "hung" in failed[hangs].failure, failed[hangs].failure
    by_key = {f.key: f for f in result.failures}
    assert by_key[dies].phase == "load" and "exited" in by_key[dies].error
    assert by_key[hangs].phase == "load" and by_key[hangs].log_tail  # with the server's own log
    good = [r for r in result.repeats if r.key == GOOD]
    assert len(good) == 1 and good[0].ok and good[0].load.rps > 0  # the matrix went on
    summary = (result.root / "summary.csv").read_text()
    assert f"{dies},uvicorn,asyncio,h11,1,dies,plaintext,,failed: every repeat,0,1" in summary
    assert took < 120 and lab_processes() == []  # the hung server was killed, not waited for


def test_a_server_that_will_not_start_is_recorded_and_skipped(tmp_path: Path) -> None:
    env = with_faulty_apps(tmp_path)
    (tmp_path / "matrix.toml").write_text(
        (tmp_path / "matrix.toml").read_text().replace('"tests.broken_app:app"', '"tests.broken_app:no_such_app"')
    )
    done = lab("--cell", "uvicorn-asyncio-h11-w1-broken", *QUICK, "--port", str(free_port(count=8)),
               results=tmp_path / "r", env=env)  # fmt: skip
    result = bundle.load_bundle(only_run(tmp_path / "r"))
    assert done.returncode == 1 and [f.phase for f in result.failures] == ["start"]
    assert "no_such_app" in result.failures[0].log_tail and not [r for r in result.repeats if r.ok]


def test_a_server_gone_before_a_repeat_fails_that_repeat_without_loading(tmp_path: Path) -> None:
    from lab.measure import repeat
    from lab.measure.instrument import Instrument
    from lab.measure.referee import Refereed
    from lab.measure.window import Work
    from loadtests.local import LocalLocust
    from servers.local import LocalTargets
    from servers.matrix import load
    from tests.synthetic import config

    cell = load().cell_from_key(GOOD)
    settings = config([GOOD], ["plaintext"], duration=1.0, warmup=0.2, users=4, load_cpus=list(machine_cpus()[-1:]))
    targets = LocalTargets(tmp_path)
    with LocalLocust(machine_cpus()[-1:], 1, tmp_path / "load") as loads, targets.serve(cell, free_port()) as server:
        server.process.kill()
        server.process.wait()
        instrument = Instrument(settings, load(), "run", loads, (0,), targets)
        record = repeat.measure(instrument, server, cell, Work("plaintext", 0.0, 1, 0.2, 1.0), Refereed(None))
    assert not record.ok and record.load is None and record.failure.startswith("before the window: the server exited")


class StopError(Exception):
    """What the run's Ctrl-C handler raises."""


@pytest.mark.parametrize("moment", ["start", "stop"])
def test_ctrl_c_while_a_server_starts_or_stops_leaves_no_server_running(
    moment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CI failure of stop 20: the run exited 130 with its server still listening. The signal came while the
    server was being stopped (or started); its exception skipped the wait and the kill. Now it is raised after."""
    from core import interrupts
    from servers import local
    from servers.matrix import load

    real_popen, real_stop = subprocess.Popen, local.LocalServer.stop

    def popen(*args: object, **kwargs: object) -> subprocess.Popen:
        process = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        signal.raise_signal(signal.SIGINT)  # as the child has just been forked
        return process

    def stop(self: local.LocalServer, timeout: float = local.STOP_TIMEOUT) -> int:
        signal.raise_signal(signal.SIGINT)  # as SIGTERM has just been sent
        return real_stop(self, timeout)

    monkeypatch.setattr(
        *(("servers.local.subprocess.Popen", popen) if moment == "start" else (local.LocalServer, "stop", stop))
    )
    port = free_port()
    cell = load().cell_from_key(GOOD)
    with (
        pytest.raises(StopError, match="SIGINT"),
        interrupts.raising(StopError),
        local.LocalTargets(tmp_path).serve(cell, port),
    ):
        pass
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens
    assert lab_processes() == []


def test_a_lost_locust_worker_fails_the_repeat_and_stops_the_run(tmp_path: Path) -> None:
    cpus = machine_cpus()
    args = ["--cell", GOOD, "--cell", "granian-uvloop-hyper-w1-raw", *QUICK, "--repeats", "2", "--load-workers", "2"]
    args += ["--port", str(free_port(count=8)), "--load-cpus", ",".join(map(str, cpus[1:] or cpus))]
    runner = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", "--results", str(tmp_path), *args], cwd=ROOT, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while len(workers) < 2:
            assert time.monotonic() < deadline and runner.poll() is None
            workers = [p for p in lab_processes() if "locustfile.py --worker " in " ".join(p.cmdline())]
            time.sleep(0.5)
        while not list(tmp_path.glob("*/runs/*.json")):  # the first repeat is written: the second one starts
            assert time.monotonic() < deadline + 60 and runner.poll() is None
            time.sleep(0.1)
        workers[0].kill()
        stderr = runner.communicate(timeout=120)[1]
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 1, stderr
    result = bundle.load_bundle(only_run(tmp_path))
    assert result.manifest.status == "stopped" and "worker" in result.manifest.parts[-1].note, stderr
    assert all(r.load.processes == 2 for r in result.repeats if r.ok)  # no repeat with a worker missing counts
    assert "stopped (lost:" in stderr.strip().splitlines()[-1]
    assert lab_processes() == []


def test_the_runner_killed_leaves_nothing_running_and_its_run_resumes(tmp_path: Path) -> None:
    port = free_port()
    args = ["--cell", GOOD, "--cell", "granian-uvloop-hyper-w1-raw", *QUICK, "--repeats", "2", "--port", str(port)]
    runner = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", "--results", str(tmp_path), *args], cwd=ROOT, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob("*/runs/*.json")):
        assert time.monotonic() < deadline and runner.poll() is None
        time.sleep(0.1)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 15
    while lab_processes() and time.monotonic() < deadline:  # they get SIGTERM from the kernel and stop cleanly
        time.sleep(0.2)
    assert lab_processes() == []
    run = only_run(tmp_path)
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"

    done = lab("--resume", "last", "--port", str(free_port(count=8)), results=tmp_path)
    assert done.returncode == 0, done.stderr
    resumed = bundle.load_bundle(run)
    assert resumed.manifest.status == "complete" and len([r for r in resumed.repeats if r.ok]) == 4
    assert [p.status for p in resumed.manifest.parts] == ["interrupted", "complete"]
    assert resumed.manifest.parts[0].note == "its runner died without ending the run"


def test_a_damaged_calibration_is_measured_again_and_a_running_run_is_not_taken(tmp_path: Path) -> None:
    from lab.run.ledger import holding

    calibrating = [a for a in QUICK if a != "--no-calibrate"]
    done = lab("--cell", GOOD, *calibrating, "--port", str(free_port(count=8)), results=tmp_path)
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path)
    (run / "calibration.json").write_text('{"schema_version": 2, "kind": "calib')
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (run / "manifest.json").write_text(json.dumps(manifest))
    with holding(run):  # as if another runner were running it
        busy = lab("--resume", run.name, results=tmp_path, timeout=60)
    assert busy.returncode == 2 and "is being run right now" in busy.stderr
    done = lab("--resume", run.name, "--port", str(free_port(count=8)), results=tmp_path)
    assert done.returncode == 0, done.stderr
    assert bundle.load_bundle(run).calibration is not None


def test_wrong_answers_dead_ports_and_silent_servers_are_errors_never_throughput(tmp_path: Path) -> None:
    from tests.test_loadgen import uvicorn

    cpus = machine_cpus()[-1:]
    with uvicorn("tests.broken_app:app") as url:
        html = run_once(Load(target=url, scenario="io", users=2, duration=1.0), cpus)
    assert html.ok == 0 and html.errors == {"content-type text/html; charset=utf-8": html.requests}
    dead = f"http://127.0.0.1:{free_port()}"
    ws = run_once(Load(target=dead, scenario="ws", users=2, duration=1.0), cpus)
    assert ws.ok == 0 and ws.errors.get("connect: ConnectionRefusedError", 0) > 10
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        started = time.monotonic()
        # 1.5 s: the window's timers can run it a little short of its duration on a busy machine, and a window of
        # 0.99 s has no whole second to show as zero.
        quiet = run_once(Load(target=f"http://127.0.0.1:{silent.getsockname()[1]}", users=2, duration=1.5), cpus)
    assert quiet.ok == 0 and quiet.per_second == [0] and time.monotonic() - started < 30
