"""`docker compose up` end to end: the quick preset in containers, a valid bundle, charts, the live Locust UI.

Needs a Docker engine with Compose v2. Without one the test is skipped on a developer's machine and fails in CI
(CI=true), where .ci/run installs and starts Docker first.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
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


@pytest.fixture(scope="module")
def compose_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not docker_ready():
        if os.environ.get("CI"):
            pytest.fail("Docker with Compose v2 is not available; .ci/run must install and start it")
        pytest.skip("no Docker engine with Compose v2 here")
    results = tmp_path_factory.mktemp("compose-results")
    return dict(
        os.environ,
        PRESET="quick",
        LAB_UID=str(os.getuid()),
        LAB_GID=str(os.getgid()),
        LAB_RESULTS=str(results),
        BASE_IMAGE=os.environ.get("LAB_BASE_IMAGE", "python:3.12-slim"),
    )


def compose(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-p", PROJECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_docker_compose_up_runs_the_quick_preset(compose_env: dict[str, str]) -> None:
    built = compose("build", env=compose_env, timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    log = Path(compose_env["LAB_RESULTS"]) / "compose.log"
    ui_seen = False
    with open(log, "w") as out:
        up = subprocess.Popen(
            ["docker", "compose", "-p", PROJECT, "up", "--exit-code-from", "lab"],
            cwd=ROOT, env=compose_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while up.poll() is None and time.monotonic() < deadline:
                if not ui_seen:
                    try:
                        urllib.request.urlopen("http://127.0.0.1:8089/", timeout=2).close()
                        ui_seen = True
                    except OSError:
                        pass
                time.sleep(0.5)
            code = up.wait(timeout=max(1, deadline - time.monotonic()))
        finally:
            if up.poll() is None:
                up.kill()
            compose("down", "--remove-orphans", env=compose_env, timeout=120)
    assert code == 0, log.read_text()[-4000:]
    assert ui_seen, "the Locust web UI was not reachable on 127.0.0.1:8089 during the run"

    (run_dir,) = [p for p in Path(compose_env["LAB_RESULTS"]).iterdir() if p.is_dir()]
    result = bundle.load_bundle(run_dir)
    assert result.manifest.status == "complete" and result.manifest.config.preset == "quick"
    assert result.manifest.machine.container and result.manifest.machine.image_id
    assert len(result.repeats) == 4 and not result.failures and result.calibration is not None
    assert all(r.load.rps > 0 and r.load.errors == {} for r in result.repeats)
    for name in ("throughput-plaintext.png", "latency-plaintext.svg", "resources.png"):
        assert (run_dir / "charts" / name).stat().st_size > 5000, name
    assert (run_dir / "report.html").exists() and (run_dir / "summary.csv").exists()
    assert (run_dir / "manifest.json").stat().st_uid == os.getuid()  # results belong to whoever ran the lab
