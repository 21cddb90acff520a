"""The lab's client: its answer parser byte by byte, and the open model against a server that stalls once."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import gevent
import pytest
from hdrh.histogram import HdrHistogram

from core.host import free_port, machine_cpus
from loadtests import flock, http1, recorder, scenarios
from loadtests.h1flock import H1Handler
from loadtests.load import Load
from loadtests.local import run_once
from servers.matrix import load

TARGET = scenarios.Target("127.0.0.1", 9)
HEAD = b"HTTP/1.1 200 OK\r\ndate: now\r\ncontent-length: 13\r\ncontent-type: text/plain; charset=utf-8\r\n\r\n"


def handler(plan: scenarios.Plan) -> H1Handler:
    """The handler of a one-server flock's connections: HTTP/1.1, or a websocket's."""
    return flock.Flock([flock.Side(TARGET, plan, recorder.Recorder())], lambda *a: None).handlers[0]


@pytest.fixture
def plaintext() -> Iterator[tuple[H1Handler, flock.Conn]]:
    left, right = socket.socketpair()
    client = handler(scenarios.plan(load().scenario("plaintext"), TARGET))
    yield client, client.connection(left)
    left.close()
    right.close()


def feed(conn: flock.Conn, data: bytes) -> None:
    conn.buf[conn.filled : conn.filled + len(data)] = data
    conn.filled += len(data)


def test_a_whole_answer_in_two_reads(plaintext) -> None:
    client, conn = plaintext
    feed(conn, HEAD[:20])
    assert client.answer(conn) == (0, None)  # not a whole answer yet
    feed(conn, HEAD[20:] + b"Hello, World!")
    assert client.answer(conn) == (len(HEAD) + 13, None)
    assert conn.head == HEAD  # remembered: the next identical head skips the header checks


def test_an_identical_head_still_has_its_body_checked(plaintext) -> None:
    client, conn = plaintext
    feed(conn, HEAD + b"Hello, World!")
    client.answer(conn)
    conn.filled = 0
    feed(conn, HEAD + b"Hello, World?")
    assert client.answer(conn) == (len(HEAD) + 13, "wrong body (13 bytes, expected 13)")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (HEAD.replace(b"200 OK", b"503 Busy") + b"Hello, World!", "status 503"),
        (HEAD.replace(b"text/plain; charset=utf-8", b"text/html") + b"Hello, World!", "content-type text/html"),
        (HEAD.replace(b"content-type: text/plain; charset=utf-8\r\n", b"") + b"Hello, World!", "content-type missing"),
        (HEAD.replace(b"13", b"12") + b"Hello, World", "wrong body (12 bytes, expected 13)"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
            b"d\r\nHello, World!\r\n0\r\n\r\n",
            "framing chunked, expected length",
        ),
    ],
)
def test_every_part_of_the_answer_is_checked(plaintext, answer: bytes, error: str) -> None:
    client, conn = plaintext
    feed(conn, answer)
    assert client.answer(conn) == (len(answer), error)


def test_an_answer_it_cannot_delimit_is_a_protocol_error(plaintext) -> None:
    client, conn = plaintext
    feed(conn, b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n\r\nHello, World!")
    with pytest.raises(http1.ProtocolError, match="neither content-length nor chunked"):
        client.answer(conn)
    conn.filled = 0
    feed(conn, b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(http1.ProtocolError, match=r"not an HTTP/1\.x status line"):
        client.answer(conn)


def test_connection_close_is_honoured(plaintext) -> None:
    client, conn = plaintext
    feed(conn, HEAD.replace(b"date: now", b"connection: close") + b"Hello, World!")
    assert client.answer(conn)[1] is None and conn.closing


def test_a_chunked_stream_with_trailers_and_in_pieces() -> None:
    body = b"x" * 1024 * 2
    wire = b"400\r\n" + body[:1024] + b"\r\n400;ext=1\r\n" + body[1024:] + b"\r\n0\r\nx-trailer: 1\r\n\r\n"
    buf = bytearray(wire)
    for cut in (3, 10, 1030, len(wire) - 3):
        assert http1.chunked(buf, 0, cut) is None
    assert http1.chunked(buf, 0, len(wire)) == (body, len(wire))


def test_websocket_frames_of_every_length_form() -> None:
    left, right = socket.socketpair()
    try:
        for size in (5, 300, 70_000):
            plan = scenarios.plan(load().scenario("ws"), TARGET, {"message_bytes": str(size)})
            client = handler(plan)
            conn = client.connection(left)
            conn.ws_ready = True
            if size < 126:
                length = bytes([size])
            elif size < 65536:
                length = b"\x7e" + size.to_bytes(2, "big")
            else:
                length = b"\x7f" + size.to_bytes(8, "big")
            frame = b"\x82" + length + plan.body
            conn.buf = bytearray(len(frame))
            feed(conn, frame[:-1])
            assert client.answer(conn) == (0, None)
            conn.buf = bytearray(frame)
            conn.filled = len(frame)
            assert client.answer(conn) == (len(frame), None)
    finally:
        left.close()
        right.close()


# --- the open model against a server that stalls once ----------------------------------------------------------------


@contextlib.contextmanager
def stalling_server(stall_at: float, stall: float) -> Iterator[str]:
    """Answers GET /plaintext as the apps do, on every connection from one thread; once, `stall_at` seconds after
    its first request, it stops answering anything for `stall` seconds."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port()
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    answer = HEAD + b"Hello, World!"
    state = {"first": None, "stalled": False, "stop": False}

    def serve() -> None:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        pending: Counter = Counter()
        while not state["stop"]:
            for key, _ in sel.select(0.05):
                if key.fileobj is listener:
                    with contextlib.suppress(BlockingIOError):
                        conn, _ = listener.accept()
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ)
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(65536)
                except (BlockingIOError, ConnectionError):
                    continue
                if not data:
                    sel.unregister(conn)
                    conn.close()
                    continue
                now = time.monotonic()
                state["first"] = state["first"] or now
                if not state["stalled"] and now - state["first"] >= stall_at:
                    state["stalled"] = True
                    time.sleep(stall)  # nothing is answered meanwhile; requests queue in the sockets
                pending[conn] += data.count(b"\r\n\r\n")
                with contextlib.suppress(BlockingIOError, ConnectionError):
                    conn.sendall(answer * pending.pop(conn))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        state["stop"] = True
        thread.join(5)
        listener.close()


def test_every_answer_reaches_locusts_statistics() -> None:
    """Locust's web UI is fed in batches, every UI_EVERY seconds, by the loop's fast path and by the handlers alike:
    every answer of a run reaches it, not only those before its first batch."""
    reported: Counter = Counter()

    def report(counts_ms: Counter, requests: int, length: int, error: str | None) -> None:
        reported["requests"] += requests
        reported["in counts"] += sum(counts_ms.values())

    with stalling_server(stall_at=60, stall=0) as url:
        target = scenarios.Target.parse(url)
        rec = recorder.Recorder()
        client = flock.Flock([flock.Side(target, scenarios.plan(load().scenario("plaintext"), target), rec)], report)
        rec.open()
        for _ in range(4):
            client.join()
        gevent.sleep(3 * flock.UI_EVERY)
        for _ in range(4):
            client.leave()
    answered = sum(rec.pending.values())
    assert answered > 500 and not rec.errors
    assert reported["requests"] == reported["in counts"] == answered


def at_least(hdr: str, micros: int) -> int:
    """How many recorded latencies were at least `micros`."""
    histogram = HdrHistogram.decode(hdr.encode())
    return sum(i.count_at_value_iterated_to for i in histogram.get_recorded_iterator() if i.value_iterated_to >= micros)


def test_a_stall_is_charged_to_every_request_scheduled_during_it() -> None:
    """Coordinated omission absent: in the open model, the ~200 requests scheduled during a 200 ms stall are late by
    up to 200 ms, counted from their slots; the closed model, which stops sending while it waits, hides them."""
    cpus = machine_cpus()[-1:]
    with stalling_server(stall_at=0.5, stall=0.2) as url:
        opened = run_once(Load(target=url, users=8, duration=1.5, rate=1000, warmup=0.2), cpus)
    with stalling_server(stall_at=0.5, stall=0.2) as url:
        shut = run_once(Load(target=url, users=8, duration=1.5, warmup=0.2), cpus)
    assert opened.model == "open" and shut.model == "closed"
    slow = at_least(opened.latency.hdr, 100_000)
    assert slow >= 60, slow  # about 100 of the ~200 waited more than 100 ms
    assert opened.latency.percentiles_us["p99"] >= 150_000
    closed_slow = at_least(shut.latency.hdr, 100_000)
    assert closed_slow <= 8 and closed_slow / shut.ok < 0.001  # 8 connections waited once each: the stall is hidden
