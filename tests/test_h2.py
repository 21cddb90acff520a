"""The lab's HTTP/2 client: its framing against literal bytes, and a second of load each against small h2 servers
that misbehave on purpose (GOAWAY mid-run, a reset stream, a body larger than the window, wrong bytes)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import gevent
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack
import pytest

from core.host import free_port
from loadtests import recorder, scenarios
from loadtests.flock import Flock, Side
from loadtests.h2flock import H2Conn, H2Handler
from loadtests.load import Load
from servers.matrix import load

TARGET = scenarios.Target("127.0.0.1", 9)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def headers_frame(stream: int, block: bytes, end_stream: bool = False) -> bytes:
    flags = 0x4 | (0x1 if end_stream else 0)  # END_HEADERS (| END_STREAM)
    return len(block).to_bytes(3, "big") + b"\x01" + bytes([flags]) + stream.to_bytes(4, "big") + block


def data_frame(stream: int, data: bytes, end_stream: bool = True) -> bytes:
    return len(data).to_bytes(3, "big") + b"\x00" + bytes([1 if end_stream else 0]) + stream.to_bytes(4, "big") + data


# HPACK by hand: ":status: 200" is static entry 8 (0x88); content-type (31) and content-length (28) as literals
# without indexing, their names from the static table (0x0f then the index minus 15), their values raw.
TEXT = b"text/plain; charset=utf-8"
OK_BLOCK = b"\x88" + b"\x0f\x10" + bytes([len(TEXT)]) + TEXT + b"\x0f\x0d\x0213"
HELLO = headers_frame(1, OK_BLOCK) + data_frame(1, b"Hello, World!")


@pytest.fixture
def client() -> Iterator[tuple[H2Handler, H2Conn, socket.socket]]:
    """The h2 handler of a flock with one connection over a socket pair, its preface sent and its first request on
    stream 1."""
    left, right = socket.socketpair()
    left.setblocking(False)
    plan = scenarios.plan(load().scenario("plaintext"), TARGET)
    h2 = Flock([Side(TARGET, plan, recorder.Recorder(), "h2")], lambda *a: None).handlers[0]
    h2.flock.running = True
    conn = h2.connection(left)
    h2.flock.conns[conn.fd] = conn
    h2.greet(conn)
    h2.rec.open()
    h2.streams = 1
    h2.send_next(conn, time.perf_counter())
    yield h2, conn, right
    h2.flock.running = False
    left.close()
    right.close()


def sent_by(peer: socket.socket) -> bytes:
    peer.settimeout(0.5)
    return peer.recv(65536)


def test_the_request_is_h2_on_the_wire(client) -> None:
    _h2, _conn, peer = client
    wire = sent_by(peer)
    assert wire.startswith(PREFACE) and wire[len(PREFACE) + 3 : len(PREFACE) + 9] == b"\x04\x00\x00\x00\x00\x00"
    assert b"\x00\x04\x3f\xff\xff\xff" in wire  # SETTINGS_INITIAL_WINDOW_SIZE 2^30 - 1
    assert b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + (2**30 - 65536).to_bytes(4, "big") in wire  # WINDOW_UPDATE 0
    # HEADERS on stream 1 with END_STREAM|END_HEADERS: a GET carries no body
    at = wire.index(b"\x01\x05\x00\x00\x00\x01")
    block = wire[at + 6 : at + 6 + int.from_bytes(wire[at - 3 : at], "big")]
    assert hpack.Decoder().decode(block, raw=True) == [
        (b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:9"), (b":path", b"/plaintext"),
    ]  # fmt: skip


def test_a_literal_answer_is_counted_once_and_timed(client) -> None:
    h2, conn, _ = client
    assert h2.handle(conn, SETTINGS + SETTINGS_ACK + HELLO, time.perf_counter()) == 1
    assert sum(h2.rec.pending.values()) == 1 and not h2.rec.errors
    assert list(conn.streams) == [3]  # the closed model's next request went out on the next stream


def test_a_header_block_split_over_continuation_and_padded_data_are_followed(client) -> None:
    h2, conn, _ = client
    half = len(OK_BLOCK) // 2
    headers = len(OK_BLOCK[:half]).to_bytes(3, "big") + b"\x01\x00\x00\x00\x00\x01" + OK_BLOCK[:half]  # no END_HEADERS
    continuation = len(OK_BLOCK[half:]).to_bytes(3, "big") + b"\x09\x04\x00\x00\x00\x01" + OK_BLOCK[half:]
    padded = b"\x03" + b"Hello, World!" + b"\x00\x00\x00"  # PADDED: a pad length, the data, the padding
    data = len(padded).to_bytes(3, "big") + b"\x00\x09\x00\x00\x00\x01" + padded  # END_STREAM | PADDED
    wire = SETTINGS + headers + continuation + data
    assert h2.handle(conn, wire[:20], time.perf_counter()) == 0  # frames split across reads wait for the rest
    assert h2.handle(conn, wire[20:], time.perf_counter()) == 1
    assert not h2.rec.errors


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (headers_frame(1, OK_BLOCK) + data_frame(1, b"Hello, World?"), "wrong body (13 bytes, expected 13)"),
        (headers_frame(1, b"\x8d" + OK_BLOCK[1:]) + data_frame(1, b"Hello, World!"), "status 404"),  # static 13
        (headers_frame(1, b"\x88\x0f\x0d\x0213") + data_frame(1, b"Hello, World!"), "content-type missing"),
        (headers_frame(1, b"\x88" + OK_BLOCK[1:-5]) + data_frame(1, b"Hello, World!"), "framing without"),
        (headers_frame(1, OK_BLOCK[:-1] + b"2") + data_frame(1, b"Hello, World"), "content-length 12, expected 13"),
    ],
)
def test_every_part_of_a_literal_answer_is_checked(client, answer: bytes, error: str) -> None:
    h2, conn, _ = client
    assert h2.handle(conn, SETTINGS + answer, time.perf_counter()) == 0
    assert not h2.rec.pending
    [(reason, count)] = h2.rec.errors.items()
    assert reason.startswith(error) and count == 1, reason


def test_http1_bytes_on_an_h2_connection_are_an_error_not_an_answer(client) -> None:
    h2, conn, _ = client
    wire = b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\ncontent-type: text/plain; charset=utf-8\r\n\r\nHello, World!"
    assert h2.handle(conn, wire, time.perf_counter()) == 0
    assert not h2.rec.pending
    [reason] = [r for r in h2.rec.errors if not r.startswith("connect:")]  # its replacement: nothing on :9
    assert reason.startswith("protocol: not an HTTP/2 server preface: b'HTTP/1.1 200 OK"), reason


def test_goaway_and_rst_stream_are_errors_with_their_codes(client) -> None:
    h2, conn, _ = client
    rst = b"\x00\x00\x04\x03\x00\x00\x00\x00\x01" + (7).to_bytes(4, "big")  # RST_STREAM stream 1, REFUSED_STREAM
    assert h2.handle(conn, SETTINGS + rst, time.perf_counter()) == 0
    assert h2.rec.errors == {"RST_STREAM REFUSED_STREAM": 1}
    assert list(conn.streams) == [3]  # the stream's slot was used again
    goaway = b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + (1).to_bytes(4, "big") + (11).to_bytes(4, "big")
    assert h2.handle(conn, goaway, time.perf_counter()) == 0
    assert h2.rec.errors["GOAWAY ENHANCE_YOUR_CALM"] == 1
    assert h2.rec.errors["GOAWAY ENHANCE_YOUR_CALM: stream unanswered"] == 1  # stream 3
    assert conn.fd not in h2.flock.conns or h2.flock.conns[conn.fd] is not conn


# --- a second of load against small h2 servers ----------------------------------------------------------------------


@dataclass
class Misbehave:
    goaway_after: int = 0  # send GOAWAY (and close) once this many streams were answered on a connection
    reset_every: int = 0  # reset every n-th stream instead of answering it
    body: bytes = b"Hello, World!"


@contextlib.contextmanager
def h2_server(how: Misbehave) -> Iterator[str]:
    """An h2c server (the `h2` library, one thread) answering as the apps do: plaintext, or echo for POST."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port()
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    listener.setblocking(False)
    stop = threading.Event()
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)

    def answer(c: h2.connection.H2Connection, sid: int, method: bytes, body: bytes) -> None:
        if method == b"POST":
            headers = [(b":status", b"200"), (b"content-type", b"application/octet-stream")]
            payload = body
        else:
            headers = [(b":status", b"200"), (b"content-type", TEXT)]
            payload = how.body
        c.send_headers(sid, [*headers, (b"content-length", str(len(payload)).encode())])
        pending[(c, sid)] = memoryview(payload)
        pump(c, sid)

    def pump(c: h2.connection.H2Connection, sid: int) -> None:
        rest = pending[(c, sid)]
        while True:
            size = min(len(rest), c.local_flow_control_window(sid), c.max_outbound_frame_size)
            if size <= 0 and rest:
                pending[(c, sid)] = rest
                return
            c.send_data(sid, rest[:size].tobytes(), end_stream=size == len(rest))
            rest = rest[size:]
            if not rest:
                del pending[(c, sid)]
                return

    pending: dict = {}

    def serve() -> None:
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        state: dict = {}
        while not stop.is_set():
            for key, _ in sel.select(0.05):
                if key.fileobj is listener:
                    with contextlib.suppress(BlockingIOError):
                        sock, _ = listener.accept()
                        c = h2.connection.H2Connection(config)
                        c.initiate_connection()
                        sock.sendall(c.data_to_send())
                        sel.register(sock, selectors.EVENT_READ, c)
                        state[sock] = {"answered": 0, "seen": 0, "methods": {}, "bodies": {}}
                    continue
                sock, c, st = key.fileobj, key.data, state[key.fileobj]
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    continue
                try:
                    handle(c, st, c.receive_data(data))
                except h2.exceptions.ProtocolError:  # a client that went away (h2load at its end)
                    sel.unregister(sock)
                    sock.close()
                    continue
                with contextlib.suppress(OSError):
                    sock.sendall(c.data_to_send())
                if how.goaway_after and st["answered"] >= how.goaway_after:
                    sel.unregister(sock)
                    sock.close()

    def handle(c: h2.connection.H2Connection, st: dict, events: list) -> None:
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                st["methods"][event.stream_id] = dict(event.headers)[b":method"]
                st["bodies"][event.stream_id] = bytearray()
            elif isinstance(event, h2.events.DataReceived):
                st["bodies"][event.stream_id] += event.data
                c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                for owner, sid in list(pending):
                    if owner is c:
                        pump(c, sid)
            elif isinstance(event, h2.events.StreamEnded):
                sid = event.stream_id
                st["seen"] += 1
                if how.reset_every and st["seen"] % how.reset_every == 0:
                    c.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
                    continue
                answer(c, sid, st["methods"].pop(sid), bytes(st["bodies"].pop(sid)))
                st["answered"] += 1
                if how.goaway_after and st["answered"] >= how.goaway_after:
                    c.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=sid)
                    break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def drive(url: str, seconds: float = 1.0, users: int = 2, streams: int = 4, **params: str) -> recorder.Recorder:
    """The h2 client in this process for `seconds` (its loop is a greenlet; the server a thread)."""
    scenario = "echo" if params else "plaintext"
    spec = Load(target=url, scenario=scenario, params=params, users=users, http="h2", streams=streams, duration=1)
    rec = recorder.Recorder()
    flock = Flock([Side(scenarios.Target.parse(url), spec.plan(), rec, "h2", streams)], lambda *a: None)
    rec.open()
    for _ in range(users):
        flock.join()
    gevent.sleep(seconds)
    rec.close()
    for _ in range(users):
        flock.leave()
    gevent.sleep(0.01)
    return rec


def test_a_well_behaved_server_is_answered_on_every_stream() -> None:
    with h2_server(Misbehave()) as url:
        rec = drive(url)
    assert sum(rec.pending.values()) > 200 and not rec.errors


def test_wrong_bytes_over_h2_count_errors_not_throughput() -> None:
    with h2_server(Misbehave(body=b"Hello, World?")) as url:
        rec = drive(url)
    assert not rec.pending
    assert rec.errors["wrong body (13 bytes, expected 13)"] > 100


def test_a_goaway_mid_run_is_counted_and_the_connection_replaced() -> None:
    with h2_server(Misbehave(goaway_after=50)) as url:
        rec = drive(url)
    assert sum(rec.pending.values()) > 200  # new connections took over
    assert rec.errors["GOAWAY NO_ERROR"] >= 2
    assert set(rec.errors) <= {"GOAWAY NO_ERROR", "GOAWAY NO_ERROR: stream unanswered"}


def test_a_reset_stream_is_counted_and_its_slot_used_again() -> None:
    with h2_server(Misbehave(reset_every=10)) as url:
        rec = drive(url)
    answered, resets = sum(rec.pending.values()), rec.errors["RST_STREAM INTERNAL_ERROR"]
    assert set(rec.errors) == {"RST_STREAM INTERNAL_ERROR"}
    assert answered > 200 and 0.08 < resets / (answered + resets) < 0.12


def test_an_echo_larger_than_the_initial_window_flows() -> None:
    # 200 KB each way: more than the 65,535-byte windows the server starts with, so the client waits for its
    # WINDOW_UPDATEs, and the server for the client's
    with h2_server(Misbehave()) as url:
        rec = drive(url, users=1, streams=2, body_bytes="200000")
    assert sum(rec.pending.values()) >= 20 and not rec.errors


def test_h2load_referees_an_h2_load_with_its_streams_and_limits_stated() -> None:
    import shutil

    from core.host import machine_cpus
    from loadtests.referee import referee

    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed (Debian: nghttp2-client)")
    with h2_server(Misbehave()) as url:
        spec = Load(target=url, users=2, http="h2", streams=4, duration=1)
        found = referee(spec, machine_cpus()[-1:])
    assert found is not None and found.tool == "h2load" and found.streams == 4
    assert found.rps > 100 and found.non_2xx == 0 and found.socket_errors == 0
    assert "-c2" in found.argv and "-m4" in found.argv
    assert found.argv[-1] == url + "/plaintext"
