"""Cells under the agent (servers/agent.py), in the target container or on a target host: the TargetBackend that
drives it over HTTP, with the records of servers/agent_api.py, the shared secret and this run's lease."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TypeVar

from core import secret
from core.errors import LabError, UsageError
from core.hostfacts import HostFacts
from core.model import Record
from core.settings import settings
from servers import agent_api as api
from servers.matrix import Cell, Matrix
from servers.own_app import OwnApp
from servers.target import (
    Restart,
    RunningServer,
    ServerError,
    ServerSample,
    StartupReport,
    TargetSideLostError,
    Termination,
)
from servers.variants import INSTALL_TIMEOUT, Environment, Variant

READY_ALLOWANCE = 60.0  # seconds the agent may take to start a cell and see it answer
RENEW_EVERY = api.LEASE_SECONDS / 4  # the runner renews its lease on the agent this often, between its own requests
REFUSED = {400, 401, 403, 409, 413}  # the agent's answers to input it will not take: the lab's UsageError
R = TypeVar("R", bound=Record)


class Client:
    """Requests to one agent, each with the shared secret and this run's lease (servers/agent.py)."""

    def __init__(self, url: str, key: str, lease: str) -> None:
        self.url, self.key, self.lease = url.rstrip("/"), key, lease

    def call(self, path: str, kind: type[R], body: Record | None = None, timeout: float = 60, lease: bool = True) -> R:
        """One request (a POST when it has a body) and its reply; the agent's refusals as the lab's errors: bad
        input, a wrong secret or a busy agent as a UsageError, a failed server as a ServerError with its log's tail,
        no answer as the target side lost."""
        data = body.model_dump_json().encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method="POST" if body is not None else "GET")
        request.add_header("content-type", "application/json")
        if lease:  # a GET /health without one takes nothing
            request.add_header(api.LEASE_HEADER, self.lease)
        for name, value in secret.header(self.key).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return kind.model_validate_json(response.read())
        except urllib.error.HTTPError as exc:
            try:
                refusal = api.Refusal.model_validate_json(exc.read() or b'{"error": ""}')
            except ValueError:
                refusal = api.Refusal(error=f"HTTP {exc.code} from something that is not the agent")
            if exc.code == 401:
                raise UsageError(
                    f"the agent at {self.url} refused this run's secret: give the runner the agent's secret file "
                    "(LAB_AGENT_SECRET_FILE; the agent's first line names it)"
                ) from None
            if exc.code in REFUSED:
                raise UsageError(f"the agent at {self.url}: {refusal.error}") from None
            raise ServerError(refusal.error or str(exc), refusal.log_tail) from None
        except OSError as exc:
            lost = f"the server agent at {self.url} (the target side) did not answer: {exc}"
            raise TargetSideLostError(lost) from None


class RemoteServer:
    """A cell running under the agent (a RunningServer)."""

    def __init__(self, agent: Client, cell: Cell, port: int, report: StartupReport, offset: float = 0.0) -> None:
        self.agent, self.cell, self.port, self.report = agent, cell, port, report
        self.offset = offset  # the agent's clock less this host's: a window's times are sent in the agent's
        self.exit_code: int | None = None
        self._tail = ""

    @property
    def url(self) -> str:
        return f"http://{self.report.host}:{self.port}"

    def alive(self) -> bool:
        status = self.agent.call(f"/status?port={self.port}", api.Status)
        self.exit_code = status.exit_code
        return status.alive

    def log_tail(self) -> str:
        if self.exit_code is None:
            return self.agent.call(f"/log?port={self.port}", api.LogTail).log_tail
        return self._tail

    def sample_open(self) -> None:
        self.agent.call("/sample/open", api.Empty, api.Port(port=self.port))

    def sample_close(self, start: float, end: float) -> ServerSample:
        shift = self.offset if start > 0 else 0.0  # (0, 0) is no window, only the end of sampling: nothing to move
        window = api.Window(start=start + shift, end=end + shift, port=self.port)
        return self.agent.call("/sample/close", ServerSample, window)

    def stop(self, timeout: float = 20.0) -> int:
        stopped = self.agent.call("/stop", api.Stopped, api.Stop(timeout=timeout, port=self.port), timeout=timeout + 30)
        self.exit_code, self._tail = stopped.exit_code, stopped.log_tail
        return self.exit_code if self.exit_code is not None else 0

    def terminate(self, at: float, kill_after: float) -> Termination:
        """SIGTERM at `at` (this host's clock; the agent's runs `offset` ahead); what followed, in this host's."""
        asked = api.Terminate(port=self.port, at=at + self.offset, kill_after=kill_after)
        wait = max(0.0, at - time.time()) + kill_after + 30
        ended = self.agent.call("/terminate", Termination, asked, timeout=wait)
        ended = ended.model_copy(update={
            "signal_at": ended.signal_at - self.offset,
            "exit_at": None if ended.exit_at is None else ended.exit_at - self.offset,
            "lifespan": [n.model_copy(update={"time": n.time - self.offset}) for n in ended.lifespan],
        })  # fmt: skip
        self.exit_code = ended.exit_code
        return ended

    def restart(self, at: float, timeout: float) -> Restart:
        """The restart at `at` (this host's clock); what followed, in this host's."""
        asked = api.RestartAsk(port=self.port, at=at + self.offset, timeout=timeout)
        done = self.agent.call("/restart", Restart, asked, timeout=max(0.0, at - time.time()) + timeout + 30)
        return done.model_copy(update={
            "signal_at": done.signal_at - self.offset,
            "done_at": None if done.done_at is None else done.done_at - self.offset,
            "lifespan": [n.model_copy(update={"time": n.time - self.offset}) for n in done.lifespan],
        })  # fmt: skip


class RemoteSpeedometer:
    """The speedometer's samplers under the agent, on the target host's CPUs (a Speedometer)."""

    def __init__(self, agent: Client, offset: float = 0.0) -> None:
        self.agent, self.offset = agent, offset

    def start(self) -> None:
        self.agent.call("/speedometer/start", api.Empty, api.Empty())

    def stop(self) -> dict[int, list[tuple[float, float]]]:
        found = self.agent.call("/speedometer/stop", api.SpeedSamples, api.Empty())
        return {int(cpu): [(when - self.offset, ops) for when, ops in s] for cpu, s in found.samples.items()}

    def close(self) -> None:
        """The agent closes its samplers when the run releases it."""


class AgentTargets:
    """The TargetBackend of the compose lab: the agent at `url` runs each cell on its own (the target's) CPUs, from
    the same matrix as the run's (`matrix`: its digest is sent with every start; None: the agent's own)."""

    def __init__(self, url: str, matrix: Matrix | None = None, key: str | None = None, host: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.agent = Client(self.url, key if key is not None else read_secret(), secrets.token_urlsafe(24))
        asked = time.time()
        health = self.agent.call("/health", api.Health, timeout=10, lease=False)
        answered = time.time()
        # The agent's clock less this host's (at the middle of the exchange): windows are timed on both hosts.
        self.clock_offset = round(health.now - (asked + answered) / 2, 4) if health.now else 0.0
        self.cpus: tuple[int, ...] = tuple(health.cpus)
        self.host = health.serve_host
        self.digest = matrix.digest if matrix is not None else health.matrix
        if health.matrix != self.digest:
            raise UsageError(
                f"the target agent's matrix (sha256 {health.matrix[:12]}…) is not this run's ({self.digest[:12]}…): "
                "give the runner and the target the same matrix file (LAB_MATRIX)"
            )
        if host is not None and host != health.serve_host:
            raise UsageError(
                f"the agent at {self.url} starts servers on {health.serve_host}, but this run targets {host}: give "
                f"--target-host {health.serve_host} (LAB_TARGET_HOST), or start the agent with --serve-host {host}"
            )
        self.agent.call("/health", api.Health, timeout=10)  # with the lease: this run holds the agent from now on
        self.done = threading.Event()
        threading.Thread(target=self.renew, name="agent-lease", daemon=True).start()

    def renew(self) -> None:
        """Keep this run's lease while it lives (a lost agent shows in the run's own requests, not here)."""
        while not self.done.wait(RENEW_EVERY):
            with contextlib.suppress(LabError):
                self.agent.call("/health", api.Health, timeout=10)

    def prepare(self, variants: list[Variant], own: OwnApp | None = None) -> list[Environment]:
        timeout = INSTALL_TIMEOUT * max(len(variants), 1) + 30
        asked = api.Prepare(variants=variants, own=own)
        return self.agent.call("/prepare", api.Prepared, asked, timeout=timeout).environments

    @contextlib.contextmanager
    def serve(self, cell: Cell, port: int, graceful: str = "lab") -> Iterator[RunningServer]:
        asked = api.Start(cell=cell.key, port=port, matrix=self.digest, graceful=graceful)
        started = self.agent.call("/start", api.Started, asked, timeout=READY_ALLOWANCE)
        server = RemoteServer(self.agent, cell, port, started.report, self.clock_offset)
        try:
            yield server
        finally:
            if server.exit_code is None:
                with contextlib.suppress(ServerError):
                    server.stop()

    def facts(self) -> HostFacts:
        return self.agent.call("/host", HostFacts)

    def speed(self, cpu: int) -> float:
        return self.agent.call("/speed", api.Speed, api.SpeedAsk(cpu=cpu, kind="index")).ops

    def probe(self, cpu: int) -> float:
        return self.agent.call("/speed", api.Speed, api.SpeedAsk(cpu=cpu, kind="probe")).ops

    def speedometer(self) -> RemoteSpeedometer:
        return RemoteSpeedometer(self.agent, self.clock_offset)

    def release(self) -> None:
        """The run is over and the agent stays: stop what this run left, and let another run drive it."""
        self.done.set()
        with contextlib.suppress(LabError):
            self.agent.call("/release", api.Empty, api.Empty(), timeout=30)

    def close(self) -> None:
        """End the agent (and with it the target container): the end of a compose run."""
        self.done.set()
        with contextlib.suppress(LabError):
            self.agent.call("/shutdown", api.Stopped, api.Stop(), timeout=30)


def read_secret() -> str:
    """The runner's copy of the agent's secret (LAB_AGENT_SECRET_FILE), which must exist."""
    path = settings().agent_secret_file
    if not path.exists():
        raise UsageError(
            f"no agent secret at {path}: copy the agent's secret file there (the agent's first line names it), or "
            "point LAB_AGENT_SECRET_FILE at it"
        )
    return secret.read(path)


def main(argv: list[str] | None = None) -> int:
    """python -m servers.remote URL: 0 when the agent at URL answers with this side's secret (compose's health check;
    it takes no lease)."""
    import sys

    (url,) = sys.argv[1:] if argv is None else argv
    request = urllib.request.Request(url.rstrip("/") + "/health", headers=secret.header(read_secret()))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            api.Health.model_validate_json(response.read())
    except (OSError, ValueError) as exc:
        print(f"the agent at {url} is not answering with this secret: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
