"""Cells in the target container: the TargetBackend that drives the agent (servers/agent.py) over loopback HTTP."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from servers.matrix import Cell, MatrixError
from servers.target import RunningServer, ServerError, ServerSample, StartupReport, TargetSideLostError

READY_ALLOWANCE = 60.0  # seconds the agent may take to start a cell and see it answer


def call(agent_url: str, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 60) -> Any:
    data = json.dumps(body or {}).encode() if method == "POST" else None
    request = urllib.request.Request(agent_url + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        reply = json.loads(exc.read() or b"{}")
        if exc.code == 400:
            raise MatrixError(reply.get("error", str(exc))) from None
        raise ServerError(f"{reply.get('error', exc)}\n{reply.get('log_tail', '')}") from None
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
        status = call(self.agent_url, "GET", "/status")
        self.exit_code = status["exit_code"]
        return bool(status["alive"])

    def log_tail(self) -> str:
        if self.exit_code is None:
            return str(call(self.agent_url, "GET", "/log").get("log_tail", ""))
        return self._tail

    def sample_open(self) -> None:
        call(self.agent_url, "POST", "/sample/open")

    def sample_close(self, start: float, end: float) -> ServerSample:
        return ServerSample.model_validate(call(self.agent_url, "POST", "/sample/close", {"start": start, "end": end}))

    def stop(self, timeout: float = 20.0) -> int:
        stopped = call(self.agent_url, "POST", "/stop", {"timeout": timeout}, timeout=timeout + 30)
        self.exit_code, self._tail = stopped["exit_code"], stopped["log_tail"]
        return self.exit_code if self.exit_code is not None else 0


class AgentTargets:
    """The TargetBackend of the compose lab: the agent at `url` runs each cell on its own (the target's) CPUs."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        health = call(self.url, "GET", "/health", timeout=10)
        self.cpus: tuple[int, ...] = tuple(health["cpus"])

    @contextlib.contextmanager
    def serve(self, cell: Cell, port: int) -> Iterator[RunningServer]:
        started = call(self.url, "POST", "/start", {"cell": cell.key, "port": port}, timeout=READY_ALLOWANCE)
        server = RemoteServer(self.url, cell, port, StartupReport.model_validate(started["report"]))
        try:
            yield server
        finally:
            if server.exit_code is None:
                with contextlib.suppress(ServerError):
                    server.stop()

    def close(self) -> None:
        """End the agent (and with it the target container): the end of a compose run."""
        with contextlib.suppress(ServerError):
            call(self.url, "POST", "/shutdown", timeout=30)
