"""The agent nobody else can drive: without the secret, or with a request it will not take, it refuses in one clear
status and starts nothing; one caller holds it at a time."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from core import secret
from core.host import LOOPBACK, free_port
from servers.agent import MAX_BODY, Agent, make_handler
from servers.agent_api import LEASE_HEADER
from servers.matrix import load

CELL = "granian-uvloop-hyper-w1-raw"
LEASE = "a-run-of-the-fuzz-test"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Agent, int, str]]:
    key = secret.ensure(tmp_path / "secret")
    port = free_port()
    agent = Agent(tmp_path / "work", load(), LOOPBACK, port)
    ref: list[ThreadingHTTPServer] = []
    httpd = ThreadingHTTPServer((LOOPBACK, port), make_handler(agent, ref, key))
    ref.append(httpd)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield agent, port, key
    finally:
        httpd.shutdown()
        httpd.server_close()
        agent.stop()


def send(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    headers = dict(headers or {})
    headers.setdefault("content-length", str(len(body)))
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    if body:
        conn.send(body)
    status = conn.getresponse().status
    conn.close()
    return status


def test_secret_files_are_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "secret"
    first = secret.ensure(path)
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) >= secret.MIN_LENGTH
    assert secret.ensure(path) == first  # never overwritten
    assert secret.matches("Bearer " + first, first)
    assert not secret.matches(first, first) and not secret.matches("Bearer " + first[:-1], first)
    assert not secret.matches(None, first) and not secret.matches("Bearer ünïcode", first)


def test_a_fuzz_of_bad_requests_starts_nothing(agent: tuple[Agent, int, str], capfd: pytest.CaptureFixture) -> None:
    lab, port, key = agent
    good = {"cell": CELL, "port": free_port(), "matrix": lab.matrix.digest}
    start = json.dumps(good).encode()
    endpoints = [
        ("GET", "/health", b""), ("GET", "/status?port=8000", b""), ("GET", "/log?port=8000", b""),
        ("POST", "/prepare", b'{"variants": []}'), ("POST", "/start", start), ("POST", "/stop", b"{}"),
        ("POST", "/shutdown", b"{}"), ("POST", "/release", b"{}"), ("POST", "/sample/open", b'{"port": 8000}'),
        ("POST", "/sample/close", b'{"start": 1, "end": 2, "port": 8000}'),
        ("POST", "/terminate", b'{"port": 8000, "at": 0, "kill_after": 1}'),
        ("POST", "/restart", b'{"port": 8000, "at": 0, "timeout": 1}'),
    ]  # fmt: skip
    wrong = [
        {}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {key}"},
        {"authorization": f"Bearer {key[:-1]}"}, {"authorization": f"Bearer {key}x"},
        {"authorization": f"bearer {key}"}, {"authorization": key},
    ]  # fmt: skip
    statuses: list[int] = []
    for method, path, body in endpoints:
        for auth in wrong:
            statuses.append(send(port, method, path, body, {**auth, LEASE_HEADER: LEASE}))
    unauthenticated = len(statuses)
    assert set(statuses) == {401}

    ok = {"authorization": f"Bearer {key}", LEASE_HEADER: LEASE}

    def start_with(**change: object) -> bytes:
        return json.dumps({**good, **change}).encode()

    malformed = [
        ("POST", "/start", start_with(cell="$(touch /tmp/pwned)"), ok),
        ("POST", "/start", start_with(cell="python -c 'import os; os.system(\"id\")'"), ok),
        ("POST", "/start", start_with(cell=["python", "-m", "http.server"]), ok),
        ("POST", "/start", start_with(cell="granian-uvloop-hyper-w1-nosuchapp"), ok),
        ("POST", "/start", start_with(cell="x" * 5000), ok),
        ("POST", "/start", start_with(matrix="0" * 64), ok),
        ("POST", "/start", start_with(port=80), ok),
        ("POST", "/start", start_with(port=70000), ok),
        ("POST", "/start", start_with(port=-1), ok),
        ("POST", "/start", start_with(port=port), ok),  # the agent's own
        ("POST", "/start", start_with(port="8000"), ok),
        ("POST", "/start", start_with(command=["sh", "-c", "id"]), ok),
        ("POST", "/start", b"not json", ok),
        ("POST", "/start", b"[]", ok),
        ("POST", "/start", b"", ok),
        ("POST", "/start", b"{" * 10000, ok),
        ("POST", "/start", start, {**ok, "content-length": "abc"}),
        ("POST", "/start", b"", {**ok, "content-length": str(MAX_BODY + 1)}),
        ("POST", "/start", start, {**ok, "transfer-encoding": "chunked"}),
        ("POST", "/start", start, {"authorization": f"Bearer {key}"}),  # no lease
        ("POST", "/start", start, {**ok, LEASE_HEADER: "short"}),
        ("POST", "/start", start, {**ok, LEASE_HEADER: "bad lease with spaces in it"}),
        ("POST", "/prepare", b'{"variants": [{"name": "B", "requirements": ["https://evil.example/x.whl"]}]}', ok),
        ("POST", "/prepare", b'{"variants": [{"name": "B", "requirements": ["-e", "/tmp"]}]}', ok),
        ("POST", "/prepare", b'{"variants": "B=uvicorn"}', ok),
        ("POST", "/stop", b'{"timeout": 1e9}', ok),
        ("POST", "/stop", b'{"timeout": -1}', ok),
        ("POST", "/stop", b'{"port": 22}', ok),
        ("POST", "/sample/open", b'{"port": 8000}', ok),  # nothing running there
        ("POST", "/sample/close", b'{"start": 10, "end": 1, "port": 8000}', ok),
        ("POST", "/sample/close", b'{"start": 0, "end": 1e12, "port": 8000}', ok),
        ("GET", "/status", b"", ok),
        ("GET", "/status?port=abc", b"", ok),
        ("GET", "/../../etc/passwd", b"", ok),
        ("POST", "/run", b'{"argv": ["id"]}', ok),
        ("DELETE", "/start", b"", ok),
        ("PUT", "/start", start, ok),
    ]
    for method, path, body, headers in malformed:
        statuses.append(send(port, method, path, body, headers))
    refused = statuses[unauthenticated:]
    assert all(400 <= s < 500 or s == 501 for s in refused), refused
    # The lease: while this run holds the agent another caller is refused; released, it may take it.
    statuses.append(send(port, "POST", "/prepare", b'{"variants": []}', {**ok, LEASE_HEADER: "another-run-entirely"}))
    assert statuses[-1] == 409
    assert send(port, "POST", "/release", b"{}", ok) == 200
    assert send(port, "GET", "/health", b"", {**ok, LEASE_HEADER: "another-run-entirely"}) == 200
    print(f"{len(statuses)} refused requests: {unauthenticated} without the secret, {len(statuses) - unauthenticated} "
          "with it but malformed or from another caller")  # fmt: skip
    assert len(statuses) >= 50
    assert lab.starts == 0 and lab.servers == {}
    assert psutil.Process().children(recursive=True) == []
    logged = capfd.readouterr()
    assert key not in logged.out + logged.err  # the agent logs refusals, never the secret


def test_terminate_and_restart_check_the_lease(agent: tuple[Agent, int, str]) -> None:
    """They wait outside the agent's lock, yet take the lease as every request that changes anything does."""
    lab, _, _ = agent
    assert lab.handle("POST", "/prepare", b'{"variants": []}', LEASE)[0] == 200  # this run holds the agent
    asks = {
        "/terminate": b'{"port": 8000, "at": 0, "kill_after": 1}',
        "/restart": b'{"port": 8000, "at": 0, "timeout": 1}',
    }
    for path, body in asks.items():
        assert lab.handle("POST", path, body, "another-run-entirely")[0] == 409
        assert lab.handle("POST", path, body, None)[0] == 400  # no lease named
        assert lab.handle("POST", path, body, "short")[0] == 400
        assert lab.handle("POST", path, body, LEASE)[0] == 404  # its holder gets through: nothing runs on 8000
        assert lab.handle("POST", path, b'{"port": 8000}', LEASE)[0] == 400
    assert lab.handle("POST", "/restart", b'{"port": 8000, "at": 0, "timeout": 1e9}', LEASE)[0] == 400
    assert lab.lease is not None and lab.lease[0] == LEASE and lab.starts == 0
