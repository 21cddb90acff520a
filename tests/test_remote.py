"""The containerised layout without containers: the runner drives a server agent and a long-lived Locust master
with a worker, as docker-compose.yml wires them, all on this machine's loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.host import ROOT, free_port
from lab import bundle


def wait_http(url: str, timeout: float = 30, secret_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url)
            if secret_file is not None and secret_file.exists():
                request.add_header("authorization", "Bearer " + secret_file.read_text().strip())
            urllib.request.urlopen(request, timeout=2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.2)


def test_runner_drives_an_agent_and_a_long_lived_locust_master(tmp_path: Path) -> None:
    agent_port, web_port, bind_port = free_port(), free_port(), free_port()
    locust = [sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py"]
    env = {**os.environ, "LAB_AGENT_SECRET_FILE": str(tmp_path / "agent-secret")}  # the agent makes it
    quiet = {"cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    master = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(bind_port)]
    master += ["--web-host", "127.0.0.1", "--web-port", str(web_port), "LeanUser"]
    worker = ["--worker", "--master-host", "127.0.0.1", "--master-port", str(bind_port), "LeanUser"]

    def pinned(cpu: int) -> dict:  # as compose's cpuset does: the agent on CPU 0, Locust on CPU 1
        return {**quiet, "preexec_fn": lambda: os.sched_setaffinity(0, {cpu})}

    services = [
        subprocess.Popen([sys.executable, "-m", "servers.agent", "--port", str(agent_port)], **pinned(0)),
        subprocess.Popen([*locust, *master], **pinned(1)),
        subprocess.Popen([*locust, *worker], **pinned(1)),
    ]
    try:
        wait_http(f"http://127.0.0.1:{agent_port}/health", secret_file=tmp_path / "agent-secret")
        wait_http(f"http://127.0.0.1:{web_port}/")
        # three stacks of one app side by side through the agent: every server of the group running there at once
        trio = subprocess.run(
            [sys.executable, "-m", "lab", "run", "--results", str(tmp_path / "group"), "--port",
             str(free_port(count=8)), "--cell", "granian-uvloop-hyper-w1-raw", "--cell",
             "uvicorn-uvloop-httptools-w1-raw", "--cell", "hypercorn-uvloop-h11-w1-raw", "--pair-rounds", "1",
             "--pair-seconds", "1", "--scenario", "plaintext", "--repeats", "1", "--duration", "1", "--warmup", "0",
             "--users", "8", "--no-calibrate", "--referee-seconds", "0", "--sweep-seconds", "0", "--server-agent",
             f"http://127.0.0.1:{agent_port}", "--locust-master", f"http://127.0.0.1:{web_port}"],
            cwd=ROOT, capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert trio.returncode == 0, trio.stderr
        (group,) = bundle.load_bundle(next((tmp_path / "group").iterdir())).groups
        assert group.ok and len(group.load.group.sides) == 3 and all(s.ok > 0 for s in group.load.group.sides)
        run = subprocess.run(
            [sys.executable, "-m", "lab", "run", "--results", str(tmp_path), "--port", str(free_port(count=8)),
             "--cell", "granian-uvloop-hyper-w1-raw@A", "--cell", "granian-uvloop-hyper-w1-raw@B",
             "--cell", "uvicorn-uvloop-httptools-w1-starlette@A", "--variant", "A=", "--variant", "B=",
             "--pair-rounds", "1", "--pair-seconds", "1",
             "--scenario", "plaintext", "--scenario", "json", "--repeats", "1", "--duration", "1", "--warmup", "0",
             "--users", "8", "--no-calibrate", "--server-agent", f"http://127.0.0.1:{agent_port}",
             "--locust-master", f"http://127.0.0.1:{web_port}", "--shutdown-services"],
            cwd=ROOT, capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        for service in services:  # --shutdown-services ended the agent, the master and so the worker
            assert service.wait(timeout=30) is not None
    finally:
        for service in services:
            if service.poll() is None:
                service.kill()
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "group"]
    result = bundle.load_bundle(run_dir)
    assert len(result.repeats) == 6 and not result.failures
    for r in result.repeats:
        assert r.load.rps > 0 and r.load.errors == {} and r.load.processes == 1
        assert r.server.cpu_cores > 0 and r.server.rss_peak_bytes > 0  # sampled by the agent
    # the agent ran both sides of the A/A pair at once, each sampled on its own
    assert sorted(p.scenario for p in result.groups) == ["json", "plaintext"]
    for p in result.groups:
        assert p.ok and p.load.pair.sides[0].ok > 0 < p.load.pair.sides[1].ok, p.failure
        assert p.servers[0].cpu_seconds > 0 < p.servers[1].cpu_seconds
    assert (run_dir / "report.html").exists()


def test_the_end_of_sampling_without_a_window_is_not_moved_by_the_clocks_offset() -> None:
    """A lost load ends the sampling with the (0, 0) window; with the agent's clock behind this one's, moving it by
    the offset would make a negative time and fail the run instead of stopping it as lost."""
    from types import SimpleNamespace

    from servers.agent_api import Window
    from servers.remote import RemoteServer

    sent: list[Window] = []
    agent = SimpleNamespace(call=lambda path, kind, body=None, **kw: sent.append(body))
    server = RemoteServer(agent, None, 8000, None, offset=-0.0002)  # type: ignore[arg-type]
    server.sample_close(0.0, 0.0)
    server.sample_close(100.0, 101.0)
    assert [(w.start, w.end) for w in sent] == [(0.0, 0.0), (99.9998, 100.9998)]
