"""The target container's agent: a small HTTP service that starts, samples and stops one cell at a time.

    python -m servers.agent --port 7900          # binds 127.0.0.1; cells run on this process's CPUs

The runner, in another container, drives it through servers/remote.py (AgentTargets); no Docker socket is needed.
Every request and reply is a record of servers/agent_api.py.

    GET  /health                                     alive, its CPUs, the running cell, its matrix's digest
    POST /prepare {"variants", "own"}                install the run's variants (or find them in its cache:
                                                     LAB_VARIANTS) before any cell of theirs starts
    POST /start {"cell", "port", "matrix"}           start a cell of its matrix (the run's, by digest) and wait
                                                     until it answers correctly
    GET  /status                                     is it alive, its exit code
    GET  /log                                        the running server's log tail
    POST /sample/open, /sample/close {"start","end"} the server's CPU and RSS during a load window
    POST /stop                                       SIGTERM it; its exit code and log tail
    POST /shutdown                                   stop everything and exit (the end of a compose run)
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import UsageError, say
from core.host import machine_cpus
from core.model import Record
from servers.agent_api import (
    Empty,
    Health,
    LogTail,
    Prepare,
    Prepared,
    Refusal,
    Start,
    Started,
    Status,
    Stop,
    Stopped,
    Window,
)
from servers.local import LocalServer, LocalTargets
from servers.matrix import Matrix, MatrixError, load
from servers.target import ServerError

DEFAULT_PORT = 7900


class Agent:
    """One cell at a time, through the local backend, on this process's CPUs."""

    def __init__(self, workdir: Path, matrix: Matrix) -> None:
        # Cells start from the HTTP server's short-lived request threads: tying them to their starter would stop them
        # when the request ends. The agent stops them itself, and its container's end ends them all.
        self.matrix = matrix
        self.targets = LocalTargets(workdir, machine_cpus(), die_with_parent=False, matrix=matrix)
        self.lock = threading.Lock()
        self.stack: contextlib.ExitStack | None = None
        self.server: LocalServer | None = None

    def start(self, asked: Start) -> Started:
        if asked.matrix != self.matrix.digest:
            raise MatrixError(
                f"the target side's matrix (sha256 {self.matrix.digest[:12]}…) is not the run's "
                f"({asked.matrix[:12]}…): give both sides the same matrix file (LAB_MATRIX)"
            )
        cell = self.matrix.cell_from_key(asked.cell)
        if self.server is not None:
            raise ServerError(f"{self.server.cell.key} is still running; stop it first")
        stack = contextlib.ExitStack()
        self.server = stack.enter_context(self.targets.serve(cell, asked.port))  # type: ignore[arg-type]
        self.stack = stack
        return Started(report=self.server.report, pid=self.server.process.pid)

    def status(self) -> Status:
        if self.server is None:
            return Status(running=None, alive=False, exit_code=None)
        alive = self.server.alive()
        return Status(running=self.server.cell.key, alive=alive, exit_code=self.server.exit_code)

    def stop(self, timeout: float = 20.0) -> Stopped:
        if self.server is None:
            return Stopped(exit_code=None, log_tail="")
        server, stack = self.server, self.stack
        self.server = self.stack = None
        try:
            code = server.stop(timeout)
        finally:
            assert stack is not None
            stack.close()
        return Stopped(exit_code=code, log_tail=server.log_tail())

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Record]:
        with self.lock:
            try:
                match (method, path):
                    case ("GET", "/health"):
                        running = self.server.cell.key if self.server else None
                        return 200, Health(ok=True, cpus=list(self.targets.cpus), running=running,
                                           matrix=self.matrix.digest)  # fmt: skip
                    case ("GET", "/status"):
                        return 200, self.status()
                    case ("POST", "/prepare"):
                        asked = Prepare.model_validate_json(body)
                        return 200, Prepared(environments=self.targets.prepare(asked.variants, asked.own))
                    case ("POST", "/start"):
                        return 200, self.start(Start.model_validate_json(body))
                    case ("POST", "/stop") | ("POST", "/shutdown"):
                        return 200, self.stop(Stop.model_validate_json(body or b"{}").timeout)
                    case ("GET", "/log"):
                        return 200, LogTail(log_tail=self.server.log_tail() if self.server else "")
                    case ("POST", "/sample/open") if self.server:
                        self.server.sample_open()
                        return 200, Empty()
                    case ("POST", "/sample/close") if self.server:
                        window = Window.model_validate_json(body)
                        return 200, self.server.sample_close(window.start, window.end)
                return 404, Refusal(error=f"no {method} {path} (or no server running)")
            except (UsageError, ValidationError) as exc:
                return 400, Refusal(error=str(exc))
            except ServerError as exc:
                self.server = self.stack = None
                return 500, Refusal(error=str(exc), log_tail=exc.log_tail)


def make_handler(agent: Agent, httpd_ref: list[ThreadingHTTPServer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _respond(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            status, reply = agent.handle(method, self.path, self.rfile.read(length) if length else b"")
            data = reply.model_dump_json().encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if self.path == "/shutdown":
                threading.Thread(target=httpd_ref[0].shutdown, daemon=True).start()

        def do_GET(self) -> None:
            self._respond("GET")

        def do_POST(self) -> None:
            self._respond("POST")

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if int(code) >= 400:  # the runner's progress says what went right; the agent says only what went wrong
                super().log_request(code, size)

        def log_message(self, format: str, *args: Any) -> None:
            say(f"agent: {format % args}")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workdir", type=Path, default=None, help="server logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    agent = Agent(args.workdir or Path(tempfile.mkdtemp(prefix="lab-agent-")), load())
    ref: list[ThreadingHTTPServer] = []
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(agent, ref))
    ref.append(httpd)
    say(f"agent: listening on http://{args.host}:{args.port}")

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # docker stop: stop the running server, then exit 0

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        with agent.lock, contextlib.suppress(ServerError):
            agent.stop()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
