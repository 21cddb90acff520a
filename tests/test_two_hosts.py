"""Two hosts made here: two network namespaces this test creates, joined by a veth pair with addresses from
198.18.0.0/15 (set aside for network benchmark tests) assigned inside them only. The agent and its servers run in
one (the target host), the runner, Locust and wrk in the other (the load host); nothing else is ever a target, and
the test removes both namespaces at the end, also when it fails. Where namespaces cannot be made (no root, no `ip`,
a container without CAP_SYS_ADMIN) it skips and says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.host import ROOT
from lab import bundle

TARGET_ADDR, LOAD_ADDR = "198.18.0.1", "198.18.0.2"
AGENT_PORT, SERVER_PORT = 7900, 8000
CELL = "granian-uvloop-hyper-w1-raw"
OTHER = "uvicorn-uvloop-httptools-w1-raw"  # side by side with CELL on the target host, both loaded from the load host


class Hosts:
    def __init__(self, tag: str) -> None:
        self.target, self.load = f"lab-t-{tag}", f"lab-l-{tag}"
        self.target_link, self.load_link = f"labt{tag}", f"labl{tag}"

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)

    def make(self) -> None:
        self.ip("netns", "add", self.target)
        self.ip("netns", "add", self.load)
        self.ip("link", "add", self.target_link, "type", "veth", "peer", "name", self.load_link)
        for ns, link, addr in ((self.target, self.target_link, TARGET_ADDR), (self.load, self.load_link, LOAD_ADDR)):
            self.ip("link", "set", link, "netns", ns)
            self.ip("-n", ns, "addr", "add", f"{addr}/30", "dev", link)
            self.ip("-n", ns, "link", "set", link, "up")
            self.ip("-n", ns, "link", "set", "lo", "up")

    def stop_target(self) -> None:
        """Every process in the target namespace (all started by this test): the target host is lost."""
        found = subprocess.run(["ip", "netns", "pids", self.target], capture_output=True, text=True, timeout=20)
        for pid in found.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = subprocess.run(["ip", "netns", "pids", self.target], capture_output=True, text=True, timeout=20)
            if not left.stdout.split():
                return
            time.sleep(0.1)

    def remove(self) -> None:
        self.stop_target()
        subprocess.run(["ip", "netns", "pids", self.load], capture_output=True, text=True, timeout=20)
        for ns in (self.target, self.load):  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)

    def packets(self) -> tuple[int, int]:
        """The load side's veth counters: packets sent to the target host and received from it."""
        done = subprocess.run(
            ["ip", "-n", self.load, "-s", "-j", "link", "show", self.load_link],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
        stats = json.loads(done.stdout)[0]["stats64"]
        return stats["tx"]["packets"], stats["rx"]["packets"]

    def run(self, ns: str, argv: list[str], env: dict[str, str], cpu: int | None, **kwargs: object) -> subprocess.Popen:
        """A process in a namespace, on one CPU (None: the runner, which keeps itself to the load CPUs)."""
        pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
        command = ["ip", "netns", "exec", ns, *pinned, *argv]
        return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, **kwargs)  # type: ignore[call-overload]


def cannot_make() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "taskset"):
        if shutil.which(tool) is None:
            return f"no `{tool}` (apt-get install iproute2 util-linux)"
    if len(os.sched_getaffinity(0)) < 2:
        return "two CPUs are needed: the target host's and the load host's"
    probe = f"lab-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=20)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20)
    return None


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    why = cannot_make()
    if why:
        pytest.skip(f"two-host test skipped: {why}")
    made = Hosts(str(os.getpid() % 100000))
    try:
        made.make()
        yield made
    finally:
        made.remove()
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20).stdout
        assert made.target not in names and made.load not in names


def start_agent(hosts: Hosts, env: dict[str, str], workdir: Path) -> subprocess.Popen:
    agent = hosts.run(
        hosts.target,
        [sys.executable, "-m", "servers.agent", "--host", TARGET_ADDR, "--port", str(AGENT_PORT), "--workdir",
         str(workdir)],
        env, 0, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert agent.stderr is not None
    line = agent.stderr.readline()  # its first line: where it listens and where its secret is, never the secret
    assert "listening on" in line and env["LAB_AGENT_SECRET_FILE"] in line, line
    assert Path(env["LAB_AGENT_SECRET_FILE"]).read_text().strip() not in line
    threading.Thread(target=agent.stderr.read, daemon=True).start()  # the rest of its log: drained, never blocking it
    return agent


def lab_run(hosts: Hosts, env: dict[str, str], *args: str) -> subprocess.Popen:
    """`python -m lab run` on the load host (its CPU), started."""
    argv = [sys.executable, "-m", "lab", "run", "--server-cpus", "0", "--load-cpus", "1", "--load-workers", "1", *args]
    return hosts.run(hosts.load, argv, env, None, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ended(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def test_a_run_across_two_hosts(hosts: Hosts, tmp_path: Path) -> None:
    secret_file, results = tmp_path / "agent-secret", tmp_path / "results"
    env = {**os.environ, "LAB_AGENT_SECRET_FILE": str(secret_file), "PYTHONPATH": str(ROOT)}
    agent = start_agent(hosts, env, tmp_path / "agent")
    agent_url = f"http://{TARGET_ADDR}:{AGENT_PORT}"
    run = ["--cell", CELL, "--cell", OTHER, "--scenario", "plaintext", "--duration", "1", "--warmup", "0",
           "--users", "8", "--referee-seconds", "1", "--sweep-seconds", "0", "--no-calibrate", "--pair-rounds", "2",
           "--pair-seconds", "1", "--results", str(results), "--port", str(SERVER_PORT),
           "--server-agent", agent_url]  # fmt: skip

    # Refused before any traffic: a wrong or missing secret, an address not named, another address named.
    (tmp_path / "wrong").write_text("w" * 43 + "\n")
    for extra_env, extra, said in (
        (
            {"LAB_AGENT_SECRET_FILE": str(tmp_path / "wrong")},
            ["--target-host", TARGET_ADDR],
            "refused this run's secret",
        ),
        ({"LAB_AGENT_SECRET_FILE": str(tmp_path / "none")}, ["--target-host", TARGET_ADDR], "no agent secret"),
        ({}, [], f"starts servers on {TARGET_ADDR}, but this run targets 127.0.0.1"),
        ({}, ["--target-host", "198.18.0.3"], "but this run targets 198.18.0.3"),
    ):
        code, out = ended(lab_run(hosts, {**env, **extra_env}, *run, *extra))
        assert code == 2 and said in out, out
    assert not results.exists() or not any(results.iterdir())
    aimed = hosts.run(
        hosts.load,
        [sys.executable, "-m", "loadtests", "run", "--target", f"http://{TARGET_ADDR}:{SERVER_PORT}",
         "--duration", "1"],
        env, 1, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    code, out = ended(aimed, 60)
    assert code == 2 and "not a loopback address" in out, out
    assert agent.poll() is None

    # The preflight reads both hosts through the agent and leaves it free for the run.
    argv = [sys.executable, "-m", "lab", "preflight", *run, "--target-host", TARGET_ADDR, "--server-cpus", "0",
            "--load-cpus", "1", "--port", "18000"]  # fmt: skip
    piped = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    code, out = ended(hosts.run(hosts.load, argv, env, None, **piped))
    assert code == 0 and "preflight ok" in out, out

    # The run: two repeats; the target host is lost after the first, and the run stops with `lost`.
    before = hosts.packets()
    first = lab_run(hosts, env, *run, "--target-host", TARGET_ADDR, "--repeats", "2")
    deadline = time.monotonic() + 120
    while not list(results.glob("*/runs/*.json")):
        assert first.poll() is None and time.monotonic() < deadline, ended(first)[1]
        time.sleep(0.1)
    hosts.stop_target()
    code, out = ended(first)
    assert code == 1 and "lost" in out, out
    (run_dir,) = list(results.iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["parts"][-1]["note"].startswith("lost:")

    # The target host is back: the run resumes there and completes.
    start_agent(hosts, env, tmp_path / "agent2")
    code, out = ended(lab_run(hosts, env, "--resume", run_dir.name, "--results", str(results)))
    assert code == 0, out
    after = hosts.packets()

    result = bundle.load_bundle(run_dir)
    assert result.manifest.status == "complete" and not result.failures
    assert result.manifest.config.target_host == TARGET_ADDR
    assert set(result.manifest.hosts) == {"load", "target"}
    assert [n.name for n in result.manifest.hosts["target"].network.nics] == [hosts.target_link]
    requests = 0
    for r in result.repeats:
        assert r.ok and r.load.rps > 0 and r.server.cpu_cores > 0  # the server sampled by the agent, on its host
        assert r.conditions is None or r.conditions.speed_samples  # the speedometer ran on the target host
        requests += r.load.requests
    assert any(r.referee and r.referee.rps > 0 for r in result.repeats)  # wrk, from the load host
    # side by side on the target host: both servers at once, loaded together from the load host, each sampled apart
    assert sorted(g.round for g in result.groups) == [1, 2]
    for g in result.groups:
        assert g.ok and [c.key for c in g.cells] == [CELL, OTHER] and all(s.ok > 0 for s in g.load.group.sides)
        assert all(s.cpu_cores > 0 for s in g.servers) and {s.target for s in g.load.group.sides} == {
            f"http://{TARGET_ADDR}:{SERVER_PORT}",
            f"http://{TARGET_ADDR}:{SERVER_PORT + 1}",
        }
        requests += g.load.requests
    sent, received = after[0] - before[0], after[1] - before[1]
    print(f"veth: {sent} packets to the target host, {received} back; {requests} requests in the measured windows")
    assert sent >= requests and received >= requests, (sent, received, requests)  # the load crossed the veth
    assert (run_dir / "report.html").exists()


def test_only_loopback_or_the_named_target_host_is_loaded() -> None:
    from core.errors import UsageError
    from loadtests.load import Load

    assert Load(target=f"http://{TARGET_ADDR}:8000", named_host=TARGET_ADDR).plan().path == "/plaintext"
    Load(target="http://127.0.0.1:8000", named_host=TARGET_ADDR)  # loopback stays allowed
    refused = [(f"http://{TARGET_ADDR}:8000", ""), ("http://198.18.0.3:8000", TARGET_ADDR),
               ("http://target.example:8000", "target.example"), ("http://0.0.0.0:8000", "0.0.0.0")]  # fmt: skip
    for target, named in refused:
        with pytest.raises(UsageError, match="not a loopback address"):
            Load(target=target, named_host=named)
    with pytest.raises(UsageError, match="not a loopback address"):
        Load(target="http://127.0.0.1:8000", group=["http://198.18.0.3:8000"], named_host=TARGET_ADDR)
    from lab import config
    from servers.matrix import load

    for bad in ("target.example", "0.0.0.0", "224.0.0.1"):
        with pytest.raises(UsageError, match="--target-host"):
            config.parse(["--cell", CELL, "--target-host", bad], load())


def test_what_would_bias_a_run_across_two_hosts_is_named() -> None:
    from core.errors import UsageError
    from core.hostfacts import facts
    from lab import config
    from lab.run import hosts
    from servers.matrix import load

    here = facts()
    net = here.network
    run = config.parse(["--cell", CELL, "--users", "512", "--server-agent", "http://198.18.0.1:7900",
                        "--target-host", TARGET_ADDR], load())  # fmt: skip
    small = here.model_copy(update={"network": net.model_copy(update={"nofile_soft": 256})})
    with pytest.raises(UsageError, match="open-file limit is 256"):
        hosts.check(run, here, small, 0.0, remote=True)
    other = here.model_copy(
        update={"kernel": "6.99", "network": net.model_copy(update={"somaxconn": 128, "nofile_soft": 100000})}
    )
    notes = hosts.check(run, here, other, 0.2, remote=True)
    assert any("somaxconn is 128" in n for n in notes) and any("clock is +200 ms" in n for n in notes)
    assert any("different kernels" in n for n in notes)
