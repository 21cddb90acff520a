"""How the lab's client speaks HTTP/1.1, and websockets over it: the handlers of Flock's HTTP/1.1 sides.

One request in flight per connection. Every answer is framed and judged by loadtests/http1.py, the framing every
HTTP/1.1 client of the lab shares; a connection's last correct answer that was length-framed and kept alive (its head
and body) becomes the connection's `known` answer, which the loop's fast path (loadtests/flock.py: Flock.run) takes
whole when a read is exactly those bytes. Everything else comes here: an answer in pieces or several in one read, a
new Date in the head, a wrong answer, the open model, a websocket's frames.
"""

from __future__ import annotations

import socket

from loadtests import http1
from loadtests.flock import Conn, Flock
from loadtests.http1 import ProtocolError
from loadtests.recorder import Recorder


class H1Conn(Conn):
    """An HTTP/1.1 connection: and the head of its last correct answer, which an identical head skips reading."""

    __slots__ = ("head",)

    def __init__(self, sock: socket.socket, rec: Recorder, side: int = 0) -> None:
        super().__init__(sock, rec, side)
        self.head = b""


class WsConn(Conn):
    """A websocket: and whether its handshake was answered."""

    __slots__ = ("ws_ready",)

    def __init__(self, sock: socket.socket, rec: Recorder, side: int = 0) -> None:
        super().__init__(sock, rec, side)
        self.ws_ready = False


class H1Handler:
    """The connections of one HTTP/1.1 side (flock.Handler)."""

    def __init__(self, flock: Flock, side: int) -> None:
        spec = flock.sides[side]
        self.flock, self.side, self.plan, self.rec = flock, side, spec.plan, spec.recorder
        self.request = spec.plan.request
        self.expected = http1.Expected.of(spec.plan)
        self.wrong_same_length = self.expected.wrong_body(len(spec.plan.body))

    def connection(self, sock: socket.socket) -> Conn:
        return H1Conn(sock, self.rec, self.side)

    def greet(self, conn: Conn) -> None:
        pass  # an HTTP/1.1 connection's first bytes are its first request

    def start(self, conn: Conn, now: float) -> None:
        if self.flock.schedule is None:
            self.flock.next_closed(conn)
        else:
            self.flock.free(conn, now)

    def send(self, conn: Conn, now: float, due: float | None = None) -> None:
        conn.due = now if due is None else due
        if due is not None:
            self.flock.late(conn.rec, due, now)
        self.flock.write(conn, self.request)

    def flush(self) -> None:
        pass  # every request is written when it is sent

    def failed(self, conn: Conn, reason: str, now: float) -> None:
        self.flock.error(reason, self.side)
        self.flock.reconnect(conn, now)

    def in_flight(self) -> int:
        mine = sum(conn.side == self.side for conn in self.flock.conns.values())
        return mine - sum(conn.side == self.side for conn in self.flock.idle)

    @staticmethod
    def receive(conn: Conn) -> int:
        """recv_into the connection's buffer after what it holds, doubling it for a large answer."""
        if conn.filled == 0:
            return conn.sock.recv_into(conn.buf)
        if conn.filled == len(conn.buf):
            conn.buf.extend(bytes(len(conn.buf)))
        return conn.sock.recv_into(memoryview(conn.buf)[conn.filled :])

    def readable(self, conn: Conn, now: float, n: int | None = None) -> int:
        """Read what arrived (n bytes already read, when given) and handle every whole answer in it; returns how
        many correct answers."""
        flock = self.flock
        if n is None:
            try:
                n = self.receive(conn)
            except BlockingIOError:
                return 0
            except OSError as exc:
                self.failed(conn, type(exc).__name__, now)
                return 0
        if n == 0:
            self.failed(conn, "server closed the connection", now)
            return 0
        conn.filled += n
        ok = 0
        while conn.filled:
            try:
                used, error = self.answer(conn)
            except ProtocolError as exc:
                self.failed(conn, f"protocol: {exc}", now)
                return ok
            if used == 0:
                break  # not a whole answer yet
            if conn.filled == used:
                conn.filled = 0
            else:
                conn.buf[: conn.filled - used] = conn.buf[used : conn.filled]
                conn.filled -= used
            if error != "":  # "" is the websocket handshake's answer: nothing to count yet
                latency = int((now - conn.due) * 1_000_000 + 0.5)
                flock.ui_ms.append(latency // 1000)
                if error is None:
                    if flock.counts(conn.rec, conn.due):
                        ok += 1
                        conn.rec.pending[latency] += 1
                else:
                    flock.error(error, self.side)
            if conn.closing:
                flock.reconnect(conn, now)
                return ok
            if flock.schedule is None:
                flock.next_closed(conn)
            else:
                flock.free(conn, now)
        return ok

    def answer(self, conn: Conn) -> tuple[int, str | None]:
        """(bytes used, None if correct else the reason) for the HTTP answer at the buffer's start; (0, None)
        while it is incomplete."""
        assert isinstance(conn, H1Conn)
        buf, filled, head = conn.buf, conn.filled, conn.head
        if head and buf.startswith(head):  # the same head as the last correct answer: only the body is new
            end = conn.whole
            if filled < end:
                return 0, None
            return end, None if buf.startswith(conn.known) else self.wrong_same_length
        response = http1.read(buf, filled)
        if response is None:
            return 0, None
        if response.close:
            conn.closing = True
        error = self.expected.verdict(response)
        if error is None and response.framing == "length" and not response.close:
            conn.head, conn.known, conn.whole = response.head, response.head + response.body, response.end
        return response.end, error


class WsHandler(H1Handler):
    """The connections of a websocket side: an HTTP/1.1 upgrade, then one echoed frame per request."""

    def connection(self, sock: socket.socket) -> Conn:
        return WsConn(sock, self.rec, self.side)

    def greet(self, conn: Conn) -> None:
        self.flock.write(conn, self.plan.handshake(self.flock.sides[self.side].target))

    def start(self, conn: Conn, now: float) -> None:
        pass  # the first request waits for the handshake's answer

    def answer(self, conn: Conn) -> tuple[int, str | None]:
        """The handshake's answer (error "" when it is the 101), then one echoed frame per request."""
        assert isinstance(conn, WsConn)
        buf, filled = conn.buf, conn.filled
        if not conn.ws_ready:
            split = buf.find(b"\r\n\r\n", 0, filled)
            if split < 0:
                return 0, None
            if buf[9:12] != b"101":
                raise ProtocolError(f"websocket upgrade refused: {bytes(buf[:40])!r}")
            conn.ws_ready = True
            return split + 4, ""
        if filled < 2:
            return 0, None
        first, second = buf[0], buf[1]
        if first & 0x0F == 0x8:
            raise ProtocolError("server sent a websocket close frame")
        length, at = second & 0x7F, 2
        if length == 126:
            if filled < 4:
                return 0, None
            length, at = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if filled < 10:
                return 0, None
            length, at = int.from_bytes(buf[2:10], "big"), 10
        end = at + length
        if filled < end:
            return 0, None
        got = bytes(buf[at:end])
        return end, None if got == self.plan.body else f"wrong echo ({len(got)} bytes, expected {len(self.plan.body)})"
