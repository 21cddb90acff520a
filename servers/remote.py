"""Cells in the target container: the TargetBackend that drives the agent (servers/agent.py) over loopback HTTP,
with the records of servers/agent_api.py."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TypeVar

from core.errors import UsageError
from core.model import Record
from servers.agent_api import (
    Empty,
    Health,
    LogTail,
    Port,
    Prepare,
    Prepared,
    Refusal,
    Start,
    Started,
    Status,
    Stop,
    Stopped,
    Terminate,
    Window,
)
from servers.matrix import Cell, Matrix
from servers.own_app import OwnApp
from servers.target import (
    RunningServer,
    ServerError,
    ServerSample,
    StartupReport,
    TargetSideLostError,
    Termination,
)
from servers.variants import INSTALL_TIMEOUT, Environment, Variant

READY_ALLOWANCE = 60.0  # seconds the agent may take to start a cell and see it answer
R = TypeVar("R", bound=Record)


def call(agent_url: str, path: str, kind: type[R], body: Record | None = None, timeout: float = 60) -> R:
    """One request to the agent (a POST when it has a body) and its reply; the agent's refusals as the lab's errors:
    bad input as a UsageError, a failed server as a ServerError with its log's tail, no answer as the target side
    lost."""
    data = body.model_dump_json().encode() if body is not None else None
    request = urllib.request.Request(agent_url + path, data=data, method="POST" if body is not None else "GET")
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return kind.model_validate_json(response.read())
    except urllib.error.HTTPError as exc:
        refusal = Refusal.model_validate_json(exc.read() or b'{"error": ""}')
        if exc.code == 400:
            raise UsageError(refusal.error) from None
        raise ServerError(refusal.error or str(exc), refusal.log_tail) from None
    except OSError as exc:
        raise TargetSideLostError(f"the server agent at {agent_url} (the target side) did not answer: {exc}") from None


class RemoteServer:
    """A cell running under the agent (a RunningServer)."""

    def __init__(self, agent_url: str, cell: Cell, port: int, report: StartupReport) -> None:
        self.agent_url, self.cell, self.port, self.report = agent_url, cell, port, report
        self.exit_code: int | None = None
        self._tail = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        status = call(self.agent_url, f"/status?port={self.port}", Status)
        self.exit_code = status.exit_code
        return status.alive

    def log_tail(self) -> str:
        if self.exit_code is None:
            return call(self.agent_url, f"/log?port={self.port}", LogTail).log_tail
        return self._tail

    def sample_open(self) -> None:
        call(self.agent_url, "/sample/open", Empty, Port(port=self.port))

    def sample_close(self, start: float, end: float) -> ServerSample:
        return call(self.agent_url, "/sample/close", ServerSample, Window(start=start, end=end, port=self.port))

    def stop(self, timeout: float = 20.0) -> int:
        stopped = call(self.agent_url, "/stop", Stopped, Stop(timeout=timeout, port=self.port), timeout=timeout + 30)
        self.exit_code, self._tail = stopped.exit_code, stopped.log_tail
        return self.exit_code if self.exit_code is not None else 0

    def terminate(self, at: float, kill_after: float) -> Termination:
        import time

        asked = Terminate(port=self.port, at=at, kill_after=kill_after)
        wait = max(0.0, at - time.time()) + kill_after + 30
        ended = call(self.agent_url, "/terminate", Termination, asked, timeout=wait)
        self.exit_code = ended.exit_code
        return ended


class AgentTargets:
    """The TargetBackend of the compose lab: the agent at `url` runs each cell on its own (the target's) CPUs, from
    the same matrix as the run's (`matrix`: its digest is sent with every start; None: the agent's own)."""

    def __init__(self, url: str, matrix: Matrix | None = None) -> None:
        self.url = url.rstrip("/")
        health = call(self.url, "/health", Health, timeout=10)
        self.cpus: tuple[int, ...] = tuple(health.cpus)
        self.digest = matrix.digest if matrix is not None else health.matrix
        if health.matrix != self.digest:
            raise UsageError(
                f"the target agent's matrix (sha256 {health.matrix[:12]}…) is not this run's ({self.digest[:12]}…): "
                "give the runner and the target the same matrix file (LAB_MATRIX)"
            )

    def prepare(self, variants: list[Variant], own: OwnApp | None = None) -> list[Environment]:
        timeout = INSTALL_TIMEOUT * max(len(variants), 1) + 30
        asked = Prepare(variants=variants, own=own)
        return call(self.url, "/prepare", Prepared, asked, timeout=timeout).environments

    @contextlib.contextmanager
    def serve(self, cell: Cell, port: int, graceful: str = "lab") -> Iterator[RunningServer]:
        asked = Start(cell=cell.key, port=port, matrix=self.digest, graceful=graceful)
        started = call(self.url, "/start", Started, asked, timeout=READY_ALLOWANCE)
        server = RemoteServer(self.url, cell, port, started.report)
        try:
            yield server
        finally:
            if server.exit_code is None:
                with contextlib.suppress(ServerError):
                    server.stop()

    def close(self) -> None:
        """End the agent (and with it the target container): the end of a compose run."""
        with contextlib.suppress(ServerError, TargetSideLostError):
            call(self.url, "/shutdown", Stopped, Stop(), timeout=30)
