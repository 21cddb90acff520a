"""Start a cell with the real launcher on a free port, and check it over a real socket."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from websockets.sync.client import connect

from core.host import free_port
from servers.local import LocalServer, LocalTargets
from servers.matrix import Cell, load

__all__ = ["conformance", "free_port", "running"]

TEXT = "text/plain; charset=utf-8"
IGNORED_HEADERS = {"date", "server", "connection", "keep-alive", "transfer-encoding"}
# Measured deviations from HTTP, asserted (so a fixed release fails the test and the entry is removed):
# (server, http) -> what it does wrong. granian 2.8.7 with --http 2 answers HEAD with the GET body in DATA frames
# (RFC 9110 9.3.2: a HEAD response has no content); the h2 library refuses it as InvalidBodyLengthError.
HEAD_SENDS_BODY = {("granian", "h2c")}


@contextlib.contextmanager
def running(cell: Cell, tmp: Path, ready_timeout: float = 30.0) -> Iterator[LocalServer]:
    """The cell's server, ready; on exit: SIGTERM, and the exit code and lifespan shutdown are checked."""
    with LocalTargets(tmp, ready_timeout=ready_timeout).serve(cell, free_port()) as server:
        assert isinstance(server, LocalServer)
        yield server
        code = server.stop()
        output = server.log.read_text()
        assert code == 0, f"{cell.key} exited {code} on SIGTERM:\n{output[-3000:]}"
        assert f"lifespan shutdown app={cell.app}" in output, f"{cell.key}: no lifespan shutdown:\n{output[-3000:]}"


def post_h2(port: int, path: str, body: bytes) -> httpx.Response:
    """POST over h2c with prior knowledge, the body sent only as far as the server's windows allow."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"), (":path", path)]
    c.send_headers(1, [*headers, ("content-length", str(len(body)))])
    rest, status, got, answer = memoryview(body), 0, bytearray(), []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def send() -> None:  # a server may answer and close before it has read the whole body: read its answer
            nonlocal rest
            try:
                sock.sendall(c.data_to_send())
            except (BrokenPipeError, ConnectionResetError):
                rest = memoryview(b"")

        send()
        while True:
            size = min(len(rest), c.local_flow_control_window(1), c.max_outbound_frame_size)
            if size > 0:
                c.send_data(1, rest[:size].tobytes(), end_stream=size == len(rest))
                rest = rest[size:]
                send()
                continue
            data = sock.recv(65536)
            assert data, "the server closed the connection before its answer ended"
            for event in c.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answer = [(k.decode(), v.decode()) for k, v in event.headers if not k.startswith(b":")]
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    got += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    response = httpx.Response(status, headers=answer, content=bytes(got))
                    response.extensions["http_version"] = b"HTTP/2"
                    return response
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    raise AssertionError(f"{type(event).__name__} {event.error_code!r} before the answer ended")
            send()


def app_headers(response: httpx.Response) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in response.headers.items() if k.lower() not in IGNORED_HEADERS]


def conformance(server: LocalServer) -> list[tuple[str, int, list[tuple[str, str]], bytes]]:
    """Every endpoint over a real socket; asserts the expected answers and returns them for cross-app comparison."""
    answers = []
    http2 = load().protocol(server.cell) == "h2"
    cell = server.cell
    with httpx.Client(base_url=server.url, timeout=10, http1=not http2, http2=http2) as client:

        def check(label, response, status, body, content_type=None):
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1"), (label, response.http_version)
            assert response.status_code == status, (label, response.status_code, response.content[:200])
            assert response.content == body, (label, response.content[:200])
            if content_type:
                assert response.headers["content-type"] == content_type, label
            if label == "stream":  # its length is not known up front: chunked over HTTP/1.1, DATA frames over h2
                assert "content-length" not in response.headers, label
                assert response.headers.get("transfer-encoding") == (None if http2 else "chunked"), label
            elif body:
                assert response.headers["content-length"] == str(len(body)), label
            answers.append((label, response.status_code, app_headers(response), response.content))

        check("plaintext", client.get("/plaintext"), 200, b"Hello, World!", TEXT)
        if (cell.server, cell.http) in HEAD_SENDS_BODY:
            with pytest.raises(httpx.LocalProtocolError, match="InvalidBodyLengthError"):
                client.head("/plaintext")
        else:
            head = client.head("/plaintext")
            assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "13"
        check("json", client.get("/json"), 200, b'{"message":"Hello, World!"}', "application/json")

        def chunked():
            yield b"chunk-one "
            yield b"chunk-two"

        check("echo-chunked", client.post("/echo", content=chunked()), 200, b"chunk-one chunk-two")
        check("echo-empty", client.post("/echo", content=b""), 200, b"")
        check("echo-at-limit", client.post("/echo", content=b"e" * 2**20), 200, b"e" * 2**20)
        # On its own connection: a server may close one whose request body it did not read (hypercorn does).
        # Over h2, httpx writes the whole body before it reads, and a server that answers 413 without reading stops
        # granting window: the h2 library sends what the windows allow and reads the answer meanwhile.
        if http2:
            over = post_h2(server.port, "/echo", b"e" * (2**20 + 1))
        else:
            over = httpx.post(f"{server.url}/echo", content=b"e" * (2**20 + 1), timeout=10)
        check("echo-over-limit", over, 413, b"Payload Too Large", TEXT)
        check("io", client.get("/io", params={"ms": 5}), 200, b"Hello, World!", TEXT)
        check("io-bad", client.get("/io", params={"ms": "-1"}), 400, b"Bad Request", TEXT)
        check("stream", client.get("/stream", params={"chunks": 5, "size": 100}), 200, b"x" * 500, TEXT)
        check("not-found", client.get("/nope"), 404, b"Not Found", TEXT)
        # On its own connection too: hypercorn 0.18 over h2c drops the connection after answering 405 to a POST (the
        # next request on it fails with a broken pipe; measured with httpx, 2026-12-03).
        with httpx.Client(base_url=server.url, timeout=10, http1=not http2, http2=http2) as alone:
            wrong = alone.post("/plaintext")
        check("wrong-method", wrong, 405, b"Method Not Allowed", TEXT)
        assert wrong.headers["allow"] == "GET, HEAD"
        loop = client.get("/debug/loop").json()
        assert loop["loop"] == server.report.loop_seen

    if not load().supports(server.cell, "ws"):
        return answers
    with connect(server.url.replace("http", "ws") + "/ws", open_timeout=10, close_timeout=5) as ws:
        ws.send("text frame")
        assert ws.recv(timeout=10) == "text frame"
        ws.send(b"\x00bytes\xff")
        assert ws.recv(timeout=10) == b"\x00bytes\xff"
    assert ws.close_code == 1000
    return answers
