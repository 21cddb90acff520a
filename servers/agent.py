"""The target side of the containerised lab: a small HTTP agent that starts, samples and stops one cell at a time.

    python -m servers.agent --port 7900          # in the target container (binds 127.0.0.1)

The runner, in another container, drives it with remote_serve(), which yields a RemoteServer with the methods of
a local servers.process.Server; no Docker socket is needed. Every server runs inside the agent's own CPU set.

    POST /start {"cell", "port", "ready_timeout"}    start a cell and wait until it answers correctly
    GET  /status                                     is it alive, its exit code
    POST /sample/open, /sample/close {"start","end"} the server's CPU and RSS during a load window
    POST /stop                                       SIGTERM it and return its exit code and log tail
    POST /shutdown                                   stop everything and exit (the end of a compose run)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from servers.matrix import Cell, MatrixError, load
from servers.process import Server, ServerError, serve

DEFAULT_PORT = 7900


class Agent:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.lock = threading.Lock()
        self.stack: contextlib.ExitStack | None = None
        self.server: Server | None = None

    def start(self, body: dict[str, Any]) -> dict[str, Any]:
        cell = load().cell_from_key(body["cell"])
        if self.server is not None:
            raise ServerError(f"{self.server.cell.key} is still running; stop it first")
        stack = contextlib.ExitStack()
        self.server = stack.enter_context(serve(cell, self.workdir, body["port"], None, body.get("ready_timeout", 30)))
        self.stack = stack
        return {"report": self.server.report, "pid": self.server.process.pid}

    def status(self) -> dict[str, Any]:
        if self.server is None:
            return {"running": None, "alive": False, "exit_code": None}
        alive = self.server.alive()
        return {"running": self.server.cell.key, "alive": alive, "exit_code": self.server.exit_code}

    def stop(self) -> dict[str, Any]:
        if self.server is None:
            return {"exit_code": None, "log_tail": ""}
        server, stack = self.server, self.stack
        self.server = self.stack = None
        try:
            code = server.stop()
        finally:
            assert stack is not None
            stack.close()
        return {"exit_code": code, "log_tail": server.log_tail()}

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            try:
                if (method, path) == ("GET", "/health"):
                    return 200, {"ok": True, "running": self.server.cell.key if self.server else None}
                if (method, path) == ("GET", "/status"):
                    return 200, self.status()
                if (method, path) == ("POST", "/start"):
                    return 200, self.start(body)
                if (method, path) == ("POST", "/stop"):
                    return 200, self.stop()
                if (method, path) == ("POST", "/sample/open") and self.server:
                    self.server.sample_open()
                    return 200, {}
                if (method, path) == ("POST", "/sample/close") and self.server:
                    return 200, self.server.sample_close(body["start"], body["end"])
                if (method, path) == ("POST", "/shutdown"):
                    return 200, self.stop()
                return 404, {"error": f"no {method} {path} (or no server running)"}
            except MatrixError as exc:
                return 400, {"error": str(exc)}
            except (ServerError, KeyError) as exc:
                message, _, log_tail = str(exc).partition("\n")
                self.server = self.stack = None
                return 500, {"error": message, "log_tail": log_tail}


def make_handler(agent: Agent, httpd_ref: list[ThreadingHTTPServer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _respond(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            status, reply = agent.handle(method, self.path, body)
            data = json.dumps(reply).encode()
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

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"asgi-bench-lab agent: {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workdir", type=Path, default=None, help="server logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    agent = Agent(args.workdir or Path(tempfile.mkdtemp(prefix="lab-agent-")))
    ref: list[ThreadingHTTPServer] = []
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(agent, ref))
    ref.append(httpd)
    print(f"asgi-bench-lab agent: listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)

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


# --- the runner's side -------------------------------------------------------------------------------------------


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
        raise ServerError(f"the server agent at {agent_url} did not answer: {exc}") from None


class RemoteServer:
    """A cell running under the agent, with the methods the runner uses on a local Server."""

    def __init__(self, agent_url: str, cell: Cell, port: int, started: dict[str, Any]) -> None:
        self.agent_url, self.cell, self.port = agent_url, cell, port
        self.report = started["report"]
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
        return self._tail

    def sample_open(self) -> None:
        call(self.agent_url, "POST", "/sample/open")

    def sample_close(self, start: float, end: float) -> dict[str, Any]:
        return call(self.agent_url, "POST", "/sample/close", {"start": start, "end": end})

    def stop(self) -> int:
        stopped = call(self.agent_url, "POST", "/stop")
        self.exit_code, self._tail = stopped["exit_code"], stopped["log_tail"]
        return self.exit_code


def remote_serve(agent_url: str) -> Any:
    """A serve()-compatible function that runs cells under the agent at agent_url."""

    @contextlib.contextmanager
    def serve_remote(
        cell: Cell, workdir: Path, port: int | None = None, cpus: Sequence[int] | None = None, ready_timeout: float = 30
    ) -> Iterator[RemoteServer]:
        started = call(agent_url, "POST", "/start", {"cell": cell.key, "port": port, "ready_timeout": ready_timeout},
                       timeout=ready_timeout + 30)  # fmt: skip
        server = RemoteServer(agent_url, cell, port or 0, started)
        try:
            yield server
        finally:
            if server.exit_code is None:
                with contextlib.suppress(ServerError):
                    server.stop()

    return serve_remote


if __name__ == "__main__":
    sys.exit(main())
