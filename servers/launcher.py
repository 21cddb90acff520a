"""Start one cell of the matrix: validate it, then exec the real server in the foreground.

Before exec, a forked watcher polls the server until a real request is answered, checks that the event loop is the
one asked for, and reports the startup time and exact versions (stderr, and --report FILE as JSON). Signals sent to
the launcher's pid reach the server itself, because the launcher *becomes* the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from core.errors import command, say
from core.host import ROOT, atomic_write, check_port_free
from core.loopback import refuse_itself
from servers.matrix import GRACEFUL, Cell, Matrix, MatrixError, load
from servers.own_app import OwnApp, with_own
from servers.target import StartupReport

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def argv(
    matrix: Matrix, cell: Cell, host: str, port: int, python: str | None = None, graceful: str = "lab"
) -> list[str]:
    """The server's command line; with the lab's graceful timeout, or (graceful "default") the server's own."""
    server = matrix.servers[cell.server]
    values = {
        "python": python or sys.executable,
        "app": matrix.apps[cell.app].target,
        "host": host,
        "port": str(port),
        "workers": str(cell.workers),
        "loop": server.loop_args[cell.loop],
        "http": cell.http,
        "config": str(ROOT / server.config) if server.config else "",
    }
    out: list[str] = []
    for part in server.command:
        out += server.http_args[cell.http] if part == "{http_args}" else [part.format(**values)]
    return out + server.stop.graceful_args(matrix.graceful_seconds(graceful))


def versions(matrix: Matrix, cell: Cell, python: str | None = None) -> dict[str, str]:
    """Exact versions of everything the cell runs on, as the interpreter that runs it (a variant's) sees them."""
    names = matrix.packages(cell)
    if python and python != sys.executable:
        return versions_in(python, names, cell)
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError as exc:
            raise MatrixError(f"cell {cell.key} needs the package {name!r}, which is not installed") from exc
    return found


VERSIONS = """import json, platform, sys
from importlib.metadata import PackageNotFoundError, version
found = {"python": platform.python_version()}
for name in sys.argv[1:]:
    try:
        found[name] = version(name)
    except PackageNotFoundError:
        found[name] = None
print(json.dumps(found))
"""


def versions_in(python: str, names: list[str], cell: Cell) -> dict[str, str]:
    import subprocess

    done = subprocess.run([python, "-c", VERSIONS, *names], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise MatrixError(f"cell {cell.key}: its interpreter {python} does not run: {done.stderr.strip()[-200:]}")
    found = json.loads(done.stdout)
    missing = [name for name, v in found.items() if v is None]
    if missing:
        raise MatrixError(f"cell {cell.key} needs the package {missing[0]!r}, which its environment does not have")
    return found


def get(host: str, port: int, path: str, timeout: float = 2.0, http2: bool = False) -> tuple[int, bytes]:
    """GET `path` on a fresh connection: HTTP/1.1, or h2c with prior knowledge; (status, body)."""
    if http2:
        return get_h2(host, port, path, timeout)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.connect()
        assert conn.sock is not None
        refuse_itself(conn.sock)  # core/loopback.py: a probe of a port nothing listens on yet
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_h2(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """One GET over h2c with prior knowledge (the `h2` library's framing): (status, body); OSError when the server
    does not speak HTTP/2 or resets the stream."""
    import socket

    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    with socket.create_connection((host, port), timeout=timeout) as sock:
        refuse_itself(sock)
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", f"{host}:{port}"), (":path", path)]
        conn.send_headers(stream, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = 0, bytearray()
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection before answering over HTTP/2")
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                raise ConnectionError(f"not an HTTP/2 answer ({type(exc).__name__}): {data[:40]!r}") from None
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    raise ConnectionError(f"HTTP/2 {type(event).__name__}: {event.error_code!r}")
                elif isinstance(event, h2.events.StreamEnded):
                    conn.close_connection()
                    sock.sendall(conn.data_to_send())
                    return status, bytes(body)
            sock.sendall(conn.data_to_send())


def probe(host: str, port: int, timeout: float = 2.0, path: str = "/plaintext", http2: bool = False) -> str | None:
    """None while the server answers GET `path` (its app's readiness probe) correctly within `timeout`, else what
    went wrong."""
    try:
        status, body = get(host, port, path, timeout, http2)
    except TimeoutError:
        return f"no answer to GET {path} within {timeout:g} s (hung?)"
    except OSError as exc:
        return f"GET {path} failed: {exc.strerror or type(exc).__name__}"
    if (status, body) != (200, b"Hello, World!"):
        return f"GET {path} answered {status} {body[:40]!r}"
    return None


def wait_ready(host: str, port: int, timeout: float, path: str = "/plaintext", http2: bool = False) -> float:
    """Seconds until GET `path` (the app's readiness probe) is answered correctly; TimeoutError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if get(host, port, path, http2=http2) == (200, b"Hello, World!"):
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"no correct answer from {host}:{port}{path} within {timeout:g} s")


def watch(matrix: Matrix, cell: Cell, server_pid: int, ns: argparse.Namespace, record: dict[str, Any]) -> int:
    """Runs in a forked grandchild while the launcher becomes the server. Returns the watcher's exit code."""
    host, port = ns.host, ns.port
    try:
        app = matrix.apps[cell.app]
        http2 = matrix.protocol(cell) == "h2"
        startup = round(wait_ready(host, port, ns.ready_timeout, app.ready, http2), 4)
        status, body = get(host, port, app.loop_probe, http2=http2)
        loop_seen = json.loads(body)["loop"] if status == 200 else None
    except (TimeoutError, OSError, ValueError) as exc:
        say(f"{cell.key} not ready: {exc}; stopping the server")
        os.kill(server_pid, signal.SIGTERM)
        return 1
    expected = matrix.loops[cell.loop].reports
    report = StartupReport(
        **record,
        startup_seconds=startup,
        loop_seen=loop_seen,
        ready=loop_seen == expected,
        ready_path=app.ready,
        protocol=matrix.protocol(cell),
    )
    if ns.report:
        atomic_write(ns.report, report.model_dump_json(indent=2) + "\n")
    if not report.ready:
        say(f"{cell.key} runs loop {loop_seen!r}, not {expected!r}; stopping")
        os.kill(server_pid, signal.SIGTERM)
        return 1
    say(
        f"{cell.key} ready on http://{host}:{port} in {startup:.2f} s "
        f"({', '.join(f'{k} {v}' for k, v in report.versions.items())})"
    )
    return 0


def parse_args(matrix: Matrix, args: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m servers", description=__doc__.splitlines()[0])
    parser.add_argument("--cell", help=f"a cell key, e.g. {matrix.valid_cells()[0].key} (instead of the axes)")
    parser.add_argument("--server", help=f"one of: {', '.join(matrix.choices('server'))}")
    parser.add_argument("--loop", help=f"one of: {', '.join(matrix.choices('loop'))}")
    parser.add_argument("--http", help=f"one of: {', '.join(matrix.choices('http'))} (default: the server's first)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    parser.add_argument("--app", default="raw", help=f"one of: {', '.join(matrix.choices('app'))} (default raw)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to wait for readiness")
    parser.add_argument("--report", type=Path, help="write startup time, versions and argv here as JSON")
    parser.add_argument("--list", nargs="?", const="full", metavar="PRESET", help="print a preset's cells and exit")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the command, start nothing")
    parser.add_argument("--matrix", type=Path, help="the matrix file (default: LAB_MATRIX, else servers/matrix.toml)")
    parser.add_argument("--python", help="the interpreter the server runs (a variant's: servers/variants.py)")
    parser.add_argument(
        "--graceful",
        choices=GRACEFUL,
        default="lab",
        help="its graceful timeout after SIGTERM: the lab's, the same for every server (matrix.toml [stop]), or the "
        "server's own default (default: lab)",
    )
    parser.add_argument("--own-app", help="your app, MODULE:ATTRIBUTE, as the app `own` (servers/own_app.py)")
    parser.add_argument("--own-code", default=".", help="the folder your app is imported from (default .)")
    return parser.parse_args(args)


def main(args: list[str] | None = None) -> int:
    return command(launch, args)


def launch(args: list[str] | None) -> int:
    """Validate the cell, then become its server (a forked watcher reports when it is ready)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--matrix", type=Path)
    first.add_argument("--own-app")
    first.add_argument("--own-code", default=".")
    known = first.parse_known_args(args)[0]
    matrix = load(known.matrix)  # the rest of the options' help names its choices
    if known.own_app:  # your app joins the matrix as the app `own` (servers/own_app.py)
        own = OwnApp(target=known.own_app, code=str(Path(known.own_code).resolve()), requests=[], requirements=[])
        matrix = with_own(matrix, own)
    ns = parse_args(matrix, args)
    if ns.list:
        for cell in matrix.preset(ns.list).cells:
            print(cell.key)
        return 0
    if ns.cell:
        cell = matrix.cell_from_key(ns.cell)
    elif ns.server and ns.loop:
        cell = matrix.cell(ns.server, ns.loop, ns.http, ns.workers, ns.app)
    else:
        raise MatrixError("name a cell: --cell KEY, or --server and --loop (with --http, --workers, --app)")
    command = argv(matrix, cell, ns.host, ns.port, ns.python, ns.graceful)
    record: dict[str, Any] = {
        "key": cell.key,
        "host": ns.host,
        "port": ns.port,
        "argv": command,
        "versions": versions(matrix, cell, ns.python),
    }
    if ns.dry_run:
        print(json.dumps(record, indent=2))
        return 0
    check_port_free(ns.host, ns.port)
    if ns.report:
        ns.report.parent.mkdir(parents=True, exist_ok=True)
        ns.report.unlink(missing_ok=True)

    sys.stdout.flush()
    sys.stderr.flush()
    server_pid = os.getpid()
    if os.fork() == 0:
        # The watcher forks once more so the server, which is about to replace this process, has no child to reap.
        if os.fork() == 0:
            code = watch(matrix, cell, server_pid, ns, record)
            os._exit(code)
        os._exit(0)
    os.wait()
    say(f"starting {cell.key}: {' '.join(command)}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if ns.own_app:  # what apps/own_app.py imports, in every worker
        env.update({"LAB_OWN_APP": ns.own_app, "LAB_OWN_CODE": str(Path(ns.own_code).resolve())})
    os.chdir(ROOT)
    os.execve(command[0], command, env)
    return 0  # unreachable


if __name__ == "__main__":
    sys.exit(main())
