"""The lab's client over HTTP/2 (h2c, prior knowledge): Flock's loop and model, with streams multiplexed.

Each Locust user is still one connection; on it, up to `streams` requests are in flight at once, each on its own
stream. The `h2` library does the framing, HPACK and flow control (sans-IO: this loop owns the socket and the epoll).
Every answer is checked whole (status, content type, content-length when the scenario's framing is "length" and its
absence when it is "chunked", body) and timed per stream into the HDR histogram: from the send in the closed model,
from the request's slot in the open model. A stream the server resets (RST_STREAM) is an error named with its code
and its slot is used again; a GOAWAY is an error named with its code, and so is each stream it leaves unanswered;
the connection is then replaced. Request bodies larger than the server's windows wait for WINDOW_UPDATE; received
DATA is acknowledged, so the server's windows reopen.

In the open model a connection with a free stream offers that stream to the next due slot (`idle` holds one entry
per free stream); a slot that finds none opens a new connection, up to the bound, as over HTTP/1.1.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from loadtests.flock import EPOLLIN, EPOLLOUT, Conn, Flock

WINDOW = 2**30 - 1  # what the client lets the server send before it acknowledges: h2load's default (-w 30, -W 30)
ResponseReceived, DataReceived, StreamEnded = h2.events.ResponseReceived, h2.events.DataReceived, h2.events.StreamEnded
StreamReset, ConnectionTerminated, WindowUpdated = (
    h2.events.StreamReset, h2.events.ConnectionTerminated, h2.events.WindowUpdated,
)  # fmt: skip
CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,  # the request's headers are built once, below, and are valid
    normalize_outbound_headers=False,
    validate_inbound_headers=False,  # the answer's status, content type and length are checked below, exactly
    normalize_inbound_headers=False,
)


@dataclass(slots=True)
class Stream:
    """One request in flight: its slot (or send time), its answer's headers' verdict and its body so far."""

    due: float
    error: str | None = None
    length: int | None = None
    body: list[bytes] = field(default_factory=list)


class H2Conn(Conn):
    """One h2c connection: its h2 state machine and the streams in flight on it."""

    __slots__ = ("greeted", "h2", "streams", "uploads")

    def __init__(self, sock, rec, side: int = 0) -> None:  # type: ignore[no-untyped-def]
        super().__init__(sock, rec, side)
        self.h2 = h2.connection.H2Connection(CONFIG)
        self.streams: dict[int, Stream] = {}
        self.uploads: dict[int, memoryview] = {}  # request bodies still to send, waiting for the server's window
        self.greeted = False  # the server's preface (a SETTINGS frame, RFC 9113 3.4) was seen


class H2Flock(Flock):
    """All h2c connections of one load-generator process, with `streams` requests in flight on each."""

    def __init__(self, *args, streams: int = 1, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        if self.pair is not None or self.plan.websocket:
            raise ValueError("the h2 client runs no paired load and no websocket")
        self.streams = streams
        plan, target = self.plan, self.target
        self.headers = [
            (b":method", plan.method.encode()), (b":scheme", b"http"),
            (b":authority", f"{target.host}:{target.port}".encode()), (b":path", plan.path.encode()),
        ]  # fmt: skip
        self.upload = plan.request.partition(b"\r\n\r\n")[2]
        if self.upload or plan.method in ("POST", "PUT", "PATCH"):
            self.headers += [(b"content-length", str(len(self.upload)).encode())]
            self.headers += [(b"content-type", b"application/octet-stream")]
        self.length = len(plan.body) if plan.framing == "length" else None
        self.status_bytes = str(plan.status).encode()
        self.batching = False  # inside a batch of events: new requests are flushed once, at its end
        self.dirty: set[H2Conn] = set()  # connections with bytes to flush at the batch's end

    # --- connections ------------------------------------------------------------------------------------------
    def connect(self, now: float, side: int = 0) -> H2Conn | None:
        conn = super().connect(now, side)
        if conn is None:
            return None
        h2conn = H2Conn(conn.sock, conn.rec, side)
        self.conns[conn.fd] = h2conn
        self.preface(h2conn)
        return h2conn

    def preface(self, conn: H2Conn) -> None:
        """The connection preface and SETTINGS, with the receive windows opened wide (as h2load's)."""
        c = conn.h2
        c.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW}
        )
        c.initiate_connection()
        c.increment_flow_control_window(WINDOW - 65535)
        self.flush(conn)

    def close(self, conn: Conn) -> None:
        super().close(conn)
        if self.idle and conn in self.idle:
            self.idle = deque(c for c in self.idle if c is not conn)

    def start(self, conn: Conn, now: float) -> None:
        if self.schedule is None:
            for _ in range(self.streams):
                self.next_closed(conn)
        else:
            self.idle.extend([conn] * self.streams)

    def next_closed(self, conn: Conn) -> None:
        self.send_next(conn, time.perf_counter())

    def send_next(self, conn: Conn, now: float, due: float | None = None) -> None:
        """Open a stream with the next request on conn; its answer is timed from `due` (its slot), else from now.
        The bytes go out when this turn of the loop flushes the connection."""
        assert isinstance(conn, H2Conn)
        if due is not None and self.counts_due(conn, due):
            self.recorder.late[int((now - due) * 1_000_000 + 0.5)] += 1
        c = conn.h2
        try:
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, self.headers, end_stream=not self.upload)
        except (h2.exceptions.ProtocolError, h2.exceptions.NoAvailableStreamIDError) as exc:
            self.error(f"h2: {type(exc).__name__}", conn.side)
            self.reconnect(conn, now)
            return
        conn.streams[sid] = Stream(now if due is None else due)
        if self.upload:
            conn.uploads[sid] = memoryview(self.upload)
            self.pump(conn, sid)
        if self.batching:
            self.dirty.add(conn)
        else:
            self.flush(conn)

    def counts_due(self, conn: Conn, due: float) -> bool:
        rec = conn.rec
        return rec.recording and (self.schedule is None or due >= rec.opened)

    def pump(self, conn: H2Conn, sid: int) -> None:
        """Send as much of the stream's request body as the server's windows allow; the rest on WINDOW_UPDATE."""
        c, rest = conn.h2, conn.uploads[sid]
        while rest:
            size = min(len(rest), c.local_flow_control_window(sid), c.max_outbound_frame_size)
            if size <= 0:
                conn.uploads[sid] = rest
                return
            c.send_data(sid, rest[:size].tobytes(), end_stream=size == len(rest))
            rest = rest[size:]
        del conn.uploads[sid]

    def flush(self, conn: H2Conn) -> None:
        data = conn.h2.data_to_send()
        if data:
            if conn.out:
                conn.out += data
            else:
                self.write(conn, data)

    def owed(self) -> int:
        in_flight = sum(len(c.streams) for c in self.conns.values() if isinstance(c, H2Conn))
        return len(self.backlog) + (in_flight if self.schedule else 0)

    # --- the loop -----------------------------------------------------------------------------------------------
    def release_due(self, now: float) -> None:
        self.batching = True
        try:
            super().release_due(now)
        finally:
            self.batching = False
            self.flush_dirty()

    def flush_dirty(self) -> None:
        for conn in self.dirty:
            if self.conns.get(conn.fd) is conn:
                self.flush(conn)
        self.dirty.clear()

    def readable(self, conn: Conn, now: float, n: int | None = None) -> int:
        """Read what arrived (n bytes already read into the buffer by Flock.run, when given) and handle every event
        in it; returns how many correct answers."""
        assert isinstance(conn, H2Conn)
        if n is None:
            try:
                n = conn.sock.recv_into(conn.buf)
            except BlockingIOError:
                return 0
            except OSError as exc:
                self.lost(conn, type(exc).__name__, now)
                return 0
        if n == 0:
            self.lost(conn, "server closed the connection", now)
            return 0
        self.batching = True
        try:
            return self.handle(conn, bytes(memoryview(conn.buf)[:n]), now)
        finally:
            self.batching = False
            self.dirty.add(conn)
            self.flush_dirty()

    def handle(self, conn: H2Conn, data: bytes, now: float) -> int:
        if not conn.greeted:  # h2 would wait for the rest of a "frame" whose length is "HTT" (an HTTP/1.1 answer)
            if len(data) < 4 or data[3] != 0x04:
                self.lost(conn, f"protocol: not an HTTP/2 server preface: {data[:24]!r}", now)
                return 0
            conn.greeted = True
        try:
            events = conn.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.lost(conn, f"protocol: h2 {type(exc).__name__}: {str(exc)[:60]}", now)
            return 0
        ok = 0
        streams, c = conn.streams, conn.h2
        if any(type(event) is ConnectionTerminated for event in events):
            conn.closing = True  # h2 has already closed it: the streams answered before the GOAWAY start no others
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.body.append(event.data)
                if event.flow_controlled_length:
                    c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif kind is ResponseReceived:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.error = self.check_head(event.headers, stream)
            elif kind is StreamEnded:
                stream = streams.pop(event.stream_id, None)
                if stream is not None:
                    ok += self.done(conn, stream, now)
            elif kind is StreamReset:
                stream = streams.pop(event.stream_id, None)
                conn.uploads.pop(event.stream_id, None)
                self.error(f"RST_STREAM {code_name(event.error_code)}", conn.side)
                if stream is not None:
                    self.ui_ms.append(int((now - stream.due) * 1000))
                    self.again(conn, now)
            elif kind is ConnectionTerminated:
                self.lost(conn, f"GOAWAY {code_name(event.error_code)}", now, goaway=True)
                return ok
            elif kind is WindowUpdated:
                for sid in list(conn.uploads) if event.stream_id == 0 else [event.stream_id]:
                    if sid in conn.uploads:
                        self.pump(conn, sid)
        return ok

    def check_head(self, headers: list[tuple[bytes, bytes]], stream: Stream) -> str | None:
        status = content_type = length = None
        for name, value in headers:
            if name == b":status":
                status = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        if status != self.status_bytes:
            return f"status {(status or b'missing').decode(errors='replace')}"
        if content_type is None or content_type.lower() != self.content_type:
            return f"content-type {(content_type or b'missing').decode(errors='replace')}"
        if self.length is None:
            if length is not None:
                return f"framing length, expected {self.plan.framing}"
        elif length is None:
            return "framing without content-length, expected length"
        else:
            stream.length = int(length)
        return None

    def done(self, conn: H2Conn, stream: Stream, now: float) -> int:
        """A stream's answer is whole: check it, time it, and use the stream's slot again."""
        body = stream.body[0] if len(stream.body) == 1 else b"".join(stream.body)
        error = stream.error
        if error is None and body != self.body:
            error = f"wrong body ({len(body)} bytes, expected {len(self.body)})"
        latency = int((now - stream.due) * 1_000_000 + 0.5)
        self.ui_ms.append(latency // 1000)
        ok = 0
        if error is None:
            rec = conn.rec
            if rec.recording and (self.schedule is None or stream.due >= rec.opened):
                ok = 1
                rec.pending[latency] += 1
        else:
            self.error(error, conn.side)
        self.again(conn, now)
        return ok

    def again(self, conn: H2Conn, now: float) -> None:
        """A stream's slot is free: the next request on it (closed model), or it waits for a slot (open)."""
        if conn.closing:
            return
        if self.schedule is None:
            self.send_next(conn, time.perf_counter())
        else:
            self.free(conn, now)

    def lost(self, conn: H2Conn, reason: str, now: float, goaway: bool = False) -> None:
        """The connection is unusable (GOAWAY, a reset, bytes that are not HTTP/2): the reason counted once, each
        stream it leaves unanswered counted too, and a new connection in its place."""
        self.error(reason, conn.side)
        unanswered = len(conn.streams)
        if unanswered and goaway:
            for _ in range(unanswered):
                self.error(f"{reason}: stream unanswered", conn.side)
        with contextlib.suppress(h2.exceptions.ProtocolError, OSError):
            conn.h2.close_connection()
            conn.sock.send(conn.h2.data_to_send())
        lost_slots = [s.due for s in conn.streams.values()]
        conn.streams.clear()
        self.close(conn)
        if not self.running:
            return
        if self.schedule is None:
            if len(self.conns) < max(self.users, 1):
                fresh = self.connect(now, conn.side)
                if fresh is not None:
                    self.start(fresh, now)
        else:
            del lost_slots  # the open model: the lost slots are errors above; new slots find new connections
            fresh = self.connect(now, conn.side) if len(self.conns) < max(self.users, 1) else None
            if fresh is not None:
                self.start(fresh, now)

    def write(self, conn: Conn, data: bytes) -> None:
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if isinstance(conn, H2Conn):
                self.lost(conn, type(exc).__name__, time.perf_counter())
            return
        if sent < len(data):
            conn.out = data[sent:]
            with contextlib.suppress(OSError):
                self.ep.modify(conn.fd, EPOLLIN | EPOLLOUT)


def code_name(code: object) -> str:
    """An HTTP/2 error code by its name (NO_ERROR, PROTOCOL_ERROR, ...), or its number when it has none."""
    try:
        return h2.errors.ErrorCodes(int(code)).name  # type: ignore[call-overload]
    except (ValueError, TypeError):
        return str(code)
