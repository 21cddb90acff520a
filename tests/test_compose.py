"""`docker compose up` as people run it: as root and as uid 1000, refusals before anything starts, a service lost
mid-run, Ctrl-C and resume. Each case checks the last line a user sees.

Needs a Docker engine with Compose v2. Without one the tests are skipped on a developer's machine and fail in CI
(CI=true), where .ci/run installs and starts Docker first. They share one image build.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.host import ROOT
from lab import bundle

PROJECT = "asgi-bench-lab-test"


def docker_ready() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0 and (
            subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def compose(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-p", PROJECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def image() -> dict[str, str]:
    if not docker_ready():
        if os.environ.get("CI"):
            pytest.fail("Docker with Compose v2 is not available; .ci/run must install and start it")
        pytest.skip("no Docker engine with Compose v2 here")
    env = dict(os.environ, BASE_IMAGE=os.environ.get("LAB_BASE_IMAGE", "python:3.12-slim"))
    for name in ("PRESET", "SERVER_CPUS", "LOAD_CPUS", "LOCUST_WORKERS", "RESUME", "LAB_UID", "LAB_GID"):
        env.pop(name, None)
    built = compose("build", env=env, timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    return env


@pytest.fixture
def lab(image: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    results = tmp_path / "results"
    results.mkdir()
    yield dict(image, PRESET="quick", LAB_RESULTS=str(results))
    compose("down", "--remove-orphans", env=image, timeout=120)


COMPOSE_OWN = ("exited with code", "Aborting on container exit", "didn't complete successfully", "Gracefully Stop")


def lines(output: str) -> list[str]:
    """What the services printed, without compose's own lines (container progress, exit codes, aborts)."""
    keep = []
    for line in output.splitlines():
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).strip()
        compose_says = text.startswith(("Container ", "Attaching to", "time=", "[+]", "✔", "#", "service "))
        own = any(said.lower() in text.lower() for said in COMPOSE_OWN) or text.endswith(" Built")
        if text and not compose_says and not own:
            keep.append(text)
    return keep


def up(env: dict[str, str], timeout: float = 600) -> tuple[int, list[str], str]:
    done = compose("up", "--no-build", "--exit-code-from", "lab", env=env, timeout=timeout)  # built by `image`
    return done.returncode, lines(done.stdout + done.stderr), done.stdout + done.stderr


def the_run(env: dict[str, str]) -> bundle.Bundle:
    (run_dir,) = [p for p in Path(env["LAB_RESULTS"]).iterdir() if p.is_dir()]
    return bundle.load_bundle(run_dir)


def running_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "{{.Names}}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return out.stdout.split()


def background(env: dict[str, str], log: Path, *flags: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["docker", "compose", "-p", PROJECT, "up", "--no-build", *flags],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_for(log: Path, text: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} did not appear:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


# --- it runs, for any user -------------------------------------------------------------------------------------------


def test_docker_compose_up_as_root_runs_the_quick_preset(lab: dict[str, str]) -> None:
    ui_seen = False
    log = Path(lab["LAB_RESULTS"]).parent / "compose.log"
    up_process = background(lab, log, "--exit-code-from", "lab")
    try:
        deadline = time.monotonic() + 600
        while up_process.poll() is None and time.monotonic() < deadline:
            if not ui_seen:
                try:
                    urllib.request.urlopen("http://127.0.0.1:8089/", timeout=2).close()
                    ui_seen = True
                except OSError:
                    pass
            time.sleep(0.5)
        code = up_process.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if up_process.poll() is None:
            up_process.kill()
    output = lines(log.read_text(errors="replace"))
    assert code == 0, "\n".join(output[-40:])
    assert ui_seen, "the Locust web UI was not reachable on 127.0.0.1:8089 during the run"
    result = the_run(lab)
    m = result.manifest
    assert m.status == "complete" and m.config.preset == "quick" and m.parts[0].uid == 0
    assert m.machine.container and m.machine.image_id and not result.failures
    assert len(result.repeats) == 4 and all(r.ok and r.load and r.load.errors == {} for r in result.repeats)
    # calibration went through the agent-started server and the master with the run's worker count and CPUs
    assert m.config.target_agent and m.config.locust_master and result.calibration is not None
    assert result.calibration.load_workers == m.config.load_workers == 1
    assert result.calibration.server_cpus == m.config.server_cpus == [0]
    assert result.calibration.load_cpus == m.config.load_cpus == [1]
    # the speedometer sampled the server CPU from the runner's container during every throughput window
    closed = [r for r in result.repeats if not r.offered_rps]
    assert closed and all(len(r.conditions.speed_samples) >= 10 for r in closed)
    assert all(not r.conditions.speed_samples for r in result.repeats if r.offered_rps)
    for name in ("throughput-plaintext.png", "latency-saturation-plaintext.svg", "resources.png"):
        assert (result.root / "charts" / name).stat().st_size > 5000, name
    assert output[-1].startswith("lab-1") and f"results in {lab['LAB_RESULTS']}/{m.run_id}" in output[-1]
    assert "fastest alone — plaintext:" in output[-4]  # the three-line headline right above it


def test_compose_stopping_the_stack_at_the_preflights_exit_cannot_stop_a_service(image: dict[str, str]) -> None:
    """With --exit-code-from, the preflight's exit makes compose stop the stack once, while it starts what waited for
    the preflight (core/gate.py). The services wait for the gate instead, which compose stops after them, and which
    ends with 0 however soon after its start the SIGTERM comes."""
    config = compose("config", "--format", "json", env=image, timeout=60)
    services = json.loads(config.stdout)["services"]
    assert services["gate"]["depends_on"]["preflight"]["condition"] == "service_completed_successfully"
    for name in ("target", "locust-master"):
        assert set(services[name]["depends_on"]) == {"gate"}, name
        assert services[name]["depends_on"]["gate"]["condition"] == "service_completed_successfully"
    for delay in (0.0, 0.02, 0.2, 0.5):
        started = subprocess.run(
            ["docker", "run", "-d", services["gate"]["image"], "python", "-m", "core.gate"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        container = started.stdout.strip()
        time.sleep(delay)
        asked = time.monotonic()
        subprocess.run(["docker", "stop", "-t", "20", container], capture_output=True, timeout=60, check=True)
        took = time.monotonic() - asked
        code = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}}", container], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        subprocess.run(["docker", "rm", container], capture_output=True, timeout=30)
        assert code == "0" and took < 5, (delay, code, took)


# --- refused before anything starts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"PRESET": "nonsense"}, "unknown preset 'nonsense'; valid: quick, default, full"),
        ({"LOCUST_WORKERS": "0"}, "LOCUST_WORKERS=0 must be at least 1"),
        ({"SERVER_CPUS": "64"}, "SERVER_CPUS '64' names CPUs [64] this machine does not offer"),
        ({"SERVER_CPUS": "0-1", "LOAD_CPUS": "1"}, "overlap"),
        ({"RESUME": "no-such-run"}, "--resume 'no-such-run': no such run"),
    ],
)
def test_bad_settings_are_refused_before_any_load(lab: dict[str, str], setting: dict[str, str], said: str) -> None:
    code, output, _ = up({**lab, **setting}, timeout=120)
    assert code != 0 and said in output[-1], output[-5:]
    assert output[-1].startswith("preflight-1") and "asgi-bench-lab: error:" in output[-1]
    assert running_containers() == []
    assert not [p for p in Path(lab["LAB_RESULTS"]).iterdir()]


def test_a_busy_port_is_named_and_nothing_is_left_running(lab: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 8089))
        busy.listen()
        code, output, _ = up(lab, timeout=120)
    assert code != 0
    assert "Locust's web UI port 127.0.0.1:8089 cannot be bound" in output[-1] and "ss -ltnp" in output[-1]
    assert running_containers() == []


# --- lost mid-run; Ctrl-C and resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "said"), [("locust-worker", "workers"), ("target", "server agent")])
def test_a_service_lost_mid_run_stops_it_within_seconds(lab: dict[str, str], service: str, said: str) -> None:
    """Plain `docker compose up` (with --exit-code-from, compose itself stops everything when one container ends)."""
    log = Path(lab["LAB_RESULTS"]).parent / f"lost-{service}.log"
    process = background(lab, log)
    try:
        wait_for(log, "calibration plaintext:")
        subprocess.run(["docker", "kill", f"{PROJECT}-{service}-1"], capture_output=True, timeout=30, check=True)
        killed = time.monotonic()
        code = process.wait(timeout=120)
        took = time.monotonic() - killed
    finally:
        if process.poll() is None:
            process.kill()
    output = lines(log.read_text(errors="replace"))
    assert code == 0 and took < 45, (code, took, output[-10:])  # plain `up` exits 0 whatever happened: the line says
    assert "stopped (lost:" in output[-1] and said in output[-1] and "RESUME=" in output[-1], output[-5:]
    result = the_run(lab)
    assert result.manifest.status == "stopped" and said in (result.manifest.parts[-1].note or "")
    assert running_containers() == []


def test_ctrl_c_interrupts_within_seconds_and_resume_finishes_the_run_as_uid_1000(lab: dict[str, str]) -> None:
    """Both parts run as the results folder's owner (uid 1000 here; root in the first test), and everything they
    write belongs to it."""
    os.chown(lab["LAB_RESULTS"], 1000, 1000)
    log = Path(lab["LAB_RESULTS"]).parent / "ctrl-c.log"
    process = background(lab, log)
    try:
        wait_for(log, "#1:")  # the first measured repeat
        process.send_signal(signal.SIGINT)
        pressed = time.monotonic()
        process.wait(timeout=60)
        took = time.monotonic() - pressed
    finally:
        if process.poll() is None:
            process.kill()
    output = lines(log.read_text(errors="replace"))
    assert took < 15, took
    assert running_containers() == []
    interrupted = the_run(lab)
    assert interrupted.manifest.status == "interrupted"
    # compose shows no service output after Ctrl-C: the last line the lab printed before it says how to continue
    assert output[-1].startswith("lab-1") and "after Ctrl-C: RESUME=last docker compose up" in output[-1], output[-3:]

    code, output, everything = up({**lab, "RESUME": "last"})
    assert code == 0, everything[-4000:]  # compose's own lines too: which container stopped, and why
    resumed = the_run(lab)
    assert resumed.manifest.status == "complete" and len(resumed.manifest.parts) == 2
    assert [p.status for p in resumed.manifest.parts] == ["interrupted", "complete"]
    assert [p.uid for p in resumed.manifest.parts] == [1000, 1000]
    assert {p.stat().st_uid for p in resumed.root.rglob("*")} == {1000}
    assert "results in" in output[-1]
    assert all("through the target agent" in p.wiring for p in resumed.manifest.parts)
    assert len([r for r in resumed.repeats if r.ok]) == 4
