"""The target container's agent: a small HTTP service that starts, samples and stops one cell at a time.

    python -m servers.agent --port 7900          # binds 127.0.0.1; cells run on this process's CPUs
    python -m servers.agent --host 198.18.0.1    # on a target host: binds that address only, servers listen there

The runner, in another container, drives it through servers/remote.py (AgentTargets); no Docker socket is needed.
Every request and reply is a record of servers/agent_api.py.

    GET  /health                                     alive, its CPUs, the running cells, its matrix's digest
    POST /prepare {"variants", "own"}                install the run's variants (or find them in its cache:
                                                     LAB_VARIANTS) before any cell of theirs starts
    POST /start {"cell", "port", "matrix"}           start a cell of its matrix (the run's, by digest) and wait
                                                     until it answers correctly; at most MAX_GROUP at once (a group)
    GET  /host                                       the target host: CPU, kernel, versions, network settings
    GET  /status?port=N                              is the server on port N alive, its exit code
    GET  /log?port=N                                 its log tail
    POST /sample/open {"port"}, /sample/close {"start","end","port"}
                                                     its CPU and RSS during a load window
    POST /stop {"port"}                              SIGTERM it; its exit code and log tail
    POST /speed {"cpu", "kind"}                      one of its CPUs' speed now (core/speed.py): index or probe
    POST /speedometer/start, /speedometer/stop       its CPUs' speed sampled during a window
    POST /release                                    the caller is done: another may drive the agent
    POST /terminate {"port", "at", "kill_after"}     SIGTERM it at a set time while the runner loads it; what
                                                     followed (servers/target.py: Termination); it is then gone
    POST /restart {"port", "at", "timeout"}          its server's restart signal (the matrix's) at a set time
                                                     while the runner loads it; what followed (Restart); it runs on
    POST /shutdown                                   stop everything and exit (the end of a compose run)

Nobody else can drive it: it listens only on the address it is told (default 127.0.0.1), and every request must
carry the secret the runner shares with it (`Authorization: Bearer …`, core/secret.py; the file LAB_AGENT_SECRET_FILE
or --secret-file, made when missing), compared in constant time; anything else gets 401 and starts nothing. It
starts only cells of its matrix, on ports 1024-65535 of its serve address, never a command it is sent; a variant's
requirements (pip installs, which run a package's build code) only with --allow-variants. One caller at a time: the
first request that changes anything takes a lease (the caller's `X-Lab-Lease` token), which each request renews and
which lapses after LEASE_SECONDS without one; meanwhile another caller gets 409. A body over MAX_BODY bytes gets 413.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import re
import signal
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from core import hostfacts, secret, speed
from core.errors import LabError, UsageError, say
from core.host import LOOPBACK, MAX_GROUP, machine_cpus
from core.model import Record
from core.settings import settings
from servers.agent_api import (
    LEASE_HEADER,
    LEASE_SECONDS,
    Empty,
    Health,
    LogTail,
    Port,
    Prepare,
    Prepared,
    Refusal,
    RestartAsk,
    Speed,
    SpeedAsk,
    SpeedSamples,
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
from servers.target import Restart, ServerError, Termination

DEFAULT_PORT = 7900
LEASE = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_BODY = 1 << 20  # bytes: the largest request (a Prepare with variants) is far smaller


class RefusedError(Exception):
    """A request the agent will not serve: its status and why."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status


class Agent:
    """One cell at a time (or the two sides of an A/B pair), through the local backend, on this process's CPUs; each
    running server is named by its port."""

    def __init__(
        self, workdir: Path, matrix: Matrix, serve_host: str = LOOPBACK, own_port: int = 0, variants: bool = False
    ) -> None:
        # Cells start from the HTTP server's short-lived request threads: tying them to their starter would stop them
        # when the request ends. The agent stops them itself, and its container's end ends them all.
        self.matrix, self.serve_host, self.own_port, self.variants = matrix, serve_host, own_port, variants
        self.targets = LocalTargets(workdir, machine_cpus(), die_with_parent=False, matrix=matrix, host=serve_host)
        self.lock = threading.Lock()
        self.servers: dict[int, tuple[LocalServer, contextlib.ExitStack]] = {}
        self.lease: tuple[str, float] | None = None  # the caller holding the agent, and when its hold lapses
        self.starts = 0  # servers started in the agent's life (the fuzz test counts them)
        self.gauge: speed.Speedometer | None = None  # the speedometer's samplers on its CPUs, once asked for

    def start(self, asked: Start) -> Started:
        if asked.matrix != self.matrix.digest:
            raise MatrixError(
                f"the target side's matrix (sha256 {self.matrix.digest[:12]}…) is not the run's "
                f"({asked.matrix[:12]}…): give both sides the same matrix file (LAB_MATRIX)"
            )
        cell = self.matrix.cell_from_key(asked.cell)
        if asked.port == self.own_port:
            raise UsageError(f"port {asked.port} is the agent's own; give the servers another")
        if asked.port in self.servers:
            raise ServerError(f"{self.servers[asked.port][0].cell.key} is still running on port {asked.port}", "")
        if len(self.servers) >= MAX_GROUP:
            running = ", ".join(s.cell.key for s, _ in self.servers.values())
            raise ServerError(f"{running} still running: at most {MAX_GROUP} at once; stop one first", "")
        stack = contextlib.ExitStack()
        server = stack.enter_context(self.targets.serve(cell, asked.port, asked.graceful))
        assert isinstance(server, LocalServer)
        self.servers[asked.port] = (server, stack)
        self.starts += 1
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

    def terminate(self, asked: Terminate, lease: str | None) -> Termination:
        """Runs outside the agent's lock: it waits for the set time and the exit while other requests go on."""
        server = self.leased_server(asked.port, lease)
        try:
            return server.terminate(asked.at, asked.kill_after)
        finally:
            with self.lock:
                if asked.port in self.servers and self.servers[asked.port][0] is server:
                    self.servers.pop(asked.port)[1].close()
                self.renew(lease)

    def restart(self, asked: RestartAsk, lease: str | None) -> Restart:
        """Runs outside the agent's lock, as `terminate` does; the server keeps running."""
        server = self.leased_server(asked.port, lease)
        try:
            return server.restart(asked.at, asked.timeout)
        finally:
            with self.lock:
                self.renew(lease)

    def leased_server(self, port: int, lease: str | None) -> LocalServer:
        """The server on `port`, for the caller holding the lease (taken or renewed here, as every request that
        changes anything does)."""
        with self.lock:
            self.take(lease, time.monotonic())
            return self.server(port)

    def renew(self, lease: str | None) -> None:
        """A long request's end renews its caller's lease, which may have lapsed meanwhile (nobody took it over)."""
        if lease is not None and (self.lease is None or self.lease[0] == lease):
            self.lease = (lease, time.monotonic() + LEASE_SECONDS)

    def take(self, lease: str | None, now: float) -> None:
        """The caller's lease taken or renewed; 409 while another caller's has not lapsed. A lapsed caller's servers
        are stopped first: nobody is left to stop them."""
        if lease is None or not LEASE.fullmatch(lease):
            raise RefusedError(400, f"give an {LEASE_HEADER} header: 16-64 letters, digits, '_' or '-' naming this run")
        if self.lease is not None and self.lease[0] != lease:
            if now < self.lease[1]:
                left = self.lease[1] - now
                raise RefusedError(409, f"another run holds this agent for up to {left:.0f} s more; wait")
            with contextlib.suppress(ServerError):
                self.stop()
        self.lease = (lease, now + LEASE_SECONDS)

    def handle(self, method: str, target: str, body: bytes, lease: str | None = None) -> tuple[int, Record]:
        """One authenticated request (the HTTP handler checked the secret); the status and the reply."""
        path, query = urlsplit(target).path, parse_qs(urlsplit(target).query)
        port = int(query["port"][0]) if query.get("port", [""])[0].isdigit() else None
        if (method, path) in (("POST", "/terminate"), ("POST", "/restart")):  # they wait: outside the lock
            try:
                if path == "/terminate":
                    return 200, self.terminate(Terminate.model_validate_json(body), lease)
                return 200, self.restart(RestartAsk.model_validate_json(body), lease)
            except RefusedError as exc:
                return exc.status, Refusal(error=str(exc))
            except LookupError as exc:
                return 404, Refusal(error=str(exc))
            except ValidationError as exc:
                return 400, Refusal(error=str(exc))
        with self.lock:
            try:
                now = time.monotonic()
                if (method, path) != ("GET", "/health") or lease is not None:
                    self.take(lease, now)
                match (method, path):
                    case ("GET", "/health"):
                        running = [s.cell.key for s, _ in self.servers.values()]
                        held = self.lease is not None and self.lease[0] != lease and now < self.lease[1]
                        return 200, Health(ok=True, cpus=list(self.targets.cpus), running=running,
                                           matrix=self.matrix.digest, serve_host=self.serve_host,
                                           leased=held, now=time.time())  # fmt: skip
                    case ("GET", "/host"):
                        return 200, hostfacts.facts()
                    case ("GET", "/status") if port is not None:
                        return 200, self.status(port)
                    case ("POST", "/release"):
                        self.stop()
                        if self.gauge is not None:
                            self.gauge.close()
                            self.gauge = None
                        self.lease = None
                        return 200, Empty()
                    case ("POST", "/prepare"):
                        asked = Prepare.model_validate_json(body)
                        if not self.variants and (any(v.requirements for v in asked.variants) or
                                                  (asked.own and asked.own.requirements)):  # fmt: skip
                            raise RefusedError(403, "this agent installs no requirements: start it --allow-variants")
                        return 200, Prepared(environments=self.targets.prepare(asked.variants, asked.own))
                    case ("POST", "/start"):
                        return 200, self.start(Start.model_validate_json(body))
                    case ("POST", "/stop") | ("POST", "/shutdown"):
                        stop = Stop.model_validate_json(body or b"{}")
                        return 200, self.stop(stop.timeout, stop.port if path == "/stop" else None)
                    case ("GET", "/log") if port is not None:
                        return 200, LogTail(log_tail=self.server(port).log_tail() if port in self.servers else "")
                    case ("POST", "/speed"):
                        asked = SpeedAsk.model_validate_json(body)
                        if asked.cpu not in self.targets.cpus:
                            raise UsageError(f"CPU {asked.cpu} is not one of the agent's, {list(self.targets.cpus)}")
                        measure = speed.speed if asked.kind == "index" else speed.probe
                        return 200, Speed(ops=measure(asked.cpu))
                    case ("POST", "/speedometer/start"):
                        self.gauge = self.gauge or speed.Speedometer(self.targets.cpus)
                        self.gauge.start()
                        return 200, Empty()
                    case ("POST", "/speedometer/stop"):
                        found = self.gauge.stop() if self.gauge else {}
                        return 200, SpeedSamples(samples={str(cpu): list(s) for cpu, s in found.items()})
                    case ("POST", "/sample/open"):
                        self.server(Port.model_validate_json(body).port).sample_open()
                        return 200, Empty()
                    case ("POST", "/sample/close"):
                        window = Window.model_validate_json(body)
                        return 200, self.server(window.port).sample_close(window.start, window.end)
                return 404, Refusal(error=f"no {method} {path}")
            except RefusedError as exc:
                return exc.status, Refusal(error=str(exc))
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


def make_handler(agent: Agent, httpd_ref: list[ThreadingHTTPServer], key: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _respond(self, method: str) -> None:
            try:
                status, reply = self._answer(method)
            except RefusedError as exc:  # refused before the agent saw it: nothing read further, nothing started
                status, reply = exc.status, Refusal(error=str(exc))
                self.close_connection = True
            data = reply.model_dump_json().encode()
            self.send_response(status)
            if status == 401:
                self.send_header("www-authenticate", 'Bearer realm="asgi-bench-lab agent"')
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if self.path == "/shutdown" and status == 200:
                threading.Thread(target=httpd_ref[0].shutdown, daemon=True).start()

        def _answer(self, method: str) -> tuple[int, Record]:
            if not secret.matches(self.headers.get(secret.HEADER), key):
                raise RefusedError(401, "no or a wrong secret: send `Authorization: Bearer <the agent's secret>`")
            length = self.headers.get("content-length") or "0"
            if not length.isdigit() or self.headers.get("transfer-encoding"):
                raise RefusedError(400, "give the body's length in content-length (no chunked bodies)")
            if int(length) > MAX_BODY:
                raise RefusedError(413, f"a body of {length} bytes; the agent takes at most {MAX_BODY}")
            body = self.rfile.read(int(length)) if int(length) else b""
            return agent.handle(method, self.path, body, self.headers.get(LEASE_HEADER))

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


def concrete(address: str, what: str) -> str:
    """An address to bind: an IP of this host, never a wildcard (the agent listens only where it is told)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(f"{what} {address!r}: give an IP address of this host, e.g. 127.0.0.1") from None
    if ip.is_unspecified:
        raise UsageError(f"{what} {address}: the agent binds one named address, not every one; give that address")
    return address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK, help="the one address the agent listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--serve-host", help="the address its servers listen on (default: --host)")
    parser.add_argument("--secret-file", type=Path, help="the shared secret (made when missing; LAB_AGENT_SECRET_FILE)")
    parser.add_argument("--allow-variants", action="store_true", help="let the runner install variants' requirements")
    parser.add_argument("--workdir", type=Path, default=None, help="server logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    try:
        host, serve_host = concrete(args.host, "--host"), concrete(args.serve_host or args.host, "--serve-host")
        secret_file = args.secret_file or settings().agent_secret_file
        key = secret.ensure(secret_file)
        agent = Agent(
            args.workdir or Path(tempfile.mkdtemp(prefix="lab-agent-")), load(), serve_host, args.port,
            args.allow_variants,
        )  # fmt: skip
        ref: list[ThreadingHTTPServer] = []
        httpd = ThreadingHTTPServer((host, args.port), make_handler(agent, ref, key))
    except LabError as exc:
        say(exc.line())
        return exc.exit_code
    except OSError as exc:
        say(f"error: the agent cannot listen on {args.host}:{args.port} ({exc.strerror})")
        return 2
    ref.append(httpd)
    say(f"agent: listening on http://{host}:{args.port} (servers on {serve_host}); its secret is in {secret_file}")

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
            if agent.gauge is not None:
                agent.gauge.close()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
