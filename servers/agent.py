"""The target container's agent: a small HTTP service that starts, samples and stops one cell at a time.

    python -m servers.agent --port 7900          # binds 127.0.0.1; cells run on this process's CPUs

The runner, in another container, drives it through servers/remote.py (AgentTargets); no Docker socket is needed.
Every request and reply is a record of servers/agent_api.py.

    GET  /health                                     alive, its CPUs, the running cells, its matrix's digest
    POST /prepare {"variants", "own"}                install the run's variants (or find them in its cache:
                                                     LAB_VARIANTS) before any cell of theirs starts
    POST /start {"cell", "port", "matrix"}           start a cell of its matrix (the run's, by digest) and wait
                                                     until it answers correctly; at most two at once (an A/B pair)
    GET  /status?port=N                              is the server on port N alive, its exit code
    GET  /log?port=N                                 its log tail
    POST /sample/open {"port"}, /sample/close {"start","end","port"}
                                                     its CPU and RSS during a load window
    POST /stop {"port"}                              SIGTERM it; its exit code and log tail
    POST /terminate {"port", "at", "kill_after"}     SIGTERM it at a set time while the runner loads it; what
                                                     followed (servers/target.py: Termination); it is then gone
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
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from core.errors import UsageError, say
from core.host import machine_cpus
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
from servers.local import LocalServer, LocalTargets
from servers.matrix import Matrix, MatrixError, load
from servers.target import ServerError, Termination

DEFAULT_PORT = 7900
AT_ONCE = 2  # servers running at once: one cell, or the two sides of an A/B pair


class Agent:
    """One cell at a time (or the two sides of an A/B pair), through the local backend, on this process's CPUs; each
    running server is named by its port."""

    def __init__(self, workdir: Path, matrix: Matrix) -> None:
        # Cells start from the HTTP server's short-lived request threads: tying them to their starter would stop them
        # when the request ends. The agent stops them itself, and its container's end ends them all.
        self.matrix = matrix
        self.targets = LocalTargets(workdir, machine_cpus(), die_with_parent=False, matrix=matrix)
        self.lock = threading.Lock()
        self.servers: dict[int, tuple[LocalServer, contextlib.ExitStack]] = {}

    def start(self, asked: Start) -> Started:
        if asked.matrix != self.matrix.digest:
            raise MatrixError(
                f"the target side's matrix (sha256 {self.matrix.digest[:12]}…) is not the run's "
                f"({asked.matrix[:12]}…): give both sides the same matrix file (LAB_MATRIX)"
            )
        cell = self.matrix.cell_from_key(asked.cell)
        if asked.port in self.servers:
            raise ServerError(f"{self.servers[asked.port][0].cell.key} is still running on port {asked.port}", "")
        if len(self.servers) >= AT_ONCE:
            running = ", ".join(s.cell.key for s, _ in self.servers.values())
            raise ServerError(f"{running} still running: at most {AT_ONCE} at once; stop one first", "")
        stack = contextlib.ExitStack()
        server = stack.enter_context(self.targets.serve(cell, asked.port, asked.graceful))
        assert isinstance(server, LocalServer)
        self.servers[asked.port] = (server, stack)
        return Started(report=server.report, pid=server.process.pid)

    def server(self, port: int) -> LocalServer:
        if port not in self.servers:
            raise LookupError(f"no server running on port {port}")
        return self.servers[port][0]

    def status(self, port: int) -> Status:
        if port not in self.servers:
            return Status(running=None, alive=False, exit_code=None)
        server = self.server(port)
        return Status(running=server.cell.key, alive=server.alive(), exit_code=server.exit_code)

    def stop(self, timeout: float = 20.0, port: int | None = None) -> Stopped:
        """SIGTERM the server on `port` (every one when None); the last one's exit code and log tail."""
        stopped = Stopped(exit_code=None, log_tail="")
        for each in [port] if port is not None else list(self.servers):
            if each not in self.servers:
                continue
            server, stack = self.servers.pop(each)
            try:
                code = server.stop(timeout)
            finally:
                stack.close()
            stopped = Stopped(exit_code=code, log_tail=server.log_tail())
        return stopped

    def terminate(self, asked: Terminate) -> Termination:
        """Runs outside the agent's lock: it waits for the set time and the exit while other requests go on."""
        with self.lock:
            server = self.server(asked.port)
        try:
            return server.terminate(asked.at, asked.kill_after)
        finally:
            with self.lock:
                if asked.port in self.servers and self.servers[asked.port][0] is server:
                    self.servers.pop(asked.port)[1].close()

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, Record]:
        path, query = urlsplit(target).path, parse_qs(urlsplit(target).query)
        port = int(query["port"][0]) if query.get("port", [""])[0].isdigit() else None
        if (method, path) == ("POST", "/terminate"):
            try:
                return 200, self.terminate(Terminate.model_validate_json(body))
            except LookupError as exc:
                return 404, Refusal(error=str(exc))
            except ValidationError as exc:
                return 400, Refusal(error=str(exc))
        with self.lock:
            try:
                match (method, path):
                    case ("GET", "/health"):
                        running = [s.cell.key for s, _ in self.servers.values()]
                        return 200, Health(ok=True, cpus=list(self.targets.cpus), running=running,
                                           matrix=self.matrix.digest)  # fmt: skip
                    case ("GET", "/status") if port is not None:
                        return 200, self.status(port)
                    case ("POST", "/prepare"):
                        asked = Prepare.model_validate_json(body)
                        return 200, Prepared(environments=self.targets.prepare(asked.variants, asked.own))
                    case ("POST", "/start"):
                        return 200, self.start(Start.model_validate_json(body))
                    case ("POST", "/stop") | ("POST", "/shutdown"):
                        stop = Stop.model_validate_json(body or b"{}")
                        return 200, self.stop(stop.timeout, stop.port if path == "/stop" else None)
                    case ("GET", "/log") if port is not None:
                        return 200, LogTail(log_tail=self.server(port).log_tail() if port in self.servers else "")
                    case ("POST", "/sample/open"):
                        self.server(Port.model_validate_json(body).port).sample_open()
                        return 200, Empty()
                    case ("POST", "/sample/close"):
                        window = Window.model_validate_json(body)
                        return 200, self.server(window.port).sample_close(window.start, window.end)
                return 404, Refusal(error=f"no {method} {target}")
            except LookupError as exc:
                return 404, Refusal(error=str(exc))
            except (UsageError, ValidationError) as exc:
                return 400, Refusal(error=str(exc))
            except ServerError as exc:
                self.forget_dead()
                return 500, Refusal(error=str(exc), log_tail=exc.log_tail)

    def forget_dead(self) -> None:
        """A server that failed is no longer running: its stack (its process group) is closed."""
        for port, (server, stack) in list(self.servers.items()):
            if not server.alive():
                del self.servers[port]
                with contextlib.suppress(ServerError):
                    stack.close()


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
