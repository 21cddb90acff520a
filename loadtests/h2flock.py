"""How the lab's client speaks HTTP/2 (h2c, prior knowledge): the handler of Flock's h2c sides, streams multiplexed.

Each Locust user is still one connection; on it, up to `streams` requests are in flight at once, each on its own
stream. The framing is the lab's own, kept to what a client of these servers meets (RFC 9113), and HPACK is the
`hpack` library's (the `h2` project's): the request's header block is encoded once, with representations that never
touch the dynamic table, so every request's HEADERS frame is the same bytes but its stream id; every answer's header
block is decoded by `hpack`, in order, and a block seen again while the decoder's table is unchanged is answered from
a cache (the same bytes against the same table decode the same). With the `h2` library's state machines on the hot
path the client spent about 200 µs of CPU per answer here; docs/http2.md has the figures.

Every answer is checked whole (status, content type, content-length when the scenario's framing is "length" and its
absence when it is "chunked", body) and timed per stream into the HDR histogram: from the send in the closed model,
from the request's slot in the open model. A stream the server resets (RST_STREAM) is an error named with its code and
its slot is used again; a GOAWAY is an error named with its code, and so is each stream it leaves unanswered; the
connection is then replaced. Flow control: the client opens its receive windows wide (h2load's default) and gives
back what it consumed; request bodies wait for the server's WINDOW_UPDATE. A server whose first frame is not SETTINGS,
or whose frames this client cannot follow, is a protocol error, never an answer.

In the open model a connection with a free stream offers that stream to the next due slot (`idle` holds one entry
per free stream); a slot that finds none opens a new connection, up to the bound, as over HTTP/1.1. In a group load's
slices, the streams answered out of their side's turn wait for it (Flock.park), one entry per stream.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

import hpack
from hpack.hpack import encode_integer

from loadtests.flock import Conn, Flock
from loadtests.recorder import Recorder
from loadtests.scenarios import Plan

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WINDOW = 2**30 - 1  # what the client lets the server send before it gives back: h2load's default (-w 30, -W 30)
DEFAULT_WINDOW = 65_535  # every window's size before SETTINGS say otherwise (RFC 9113 6.9.2)
MAX_STREAM_ID = 2**31 - 1
DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 5, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
ERROR_CODES = (
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
    "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
)  # fmt: skip
SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 2, 4, 5
FRAME_HEAD = struct.Struct(">IBI")  # a frame's 9 bytes: its length << 8 | its type, its flags, its stream id
HEADLESS = "no HEADERS yet"  # a stream's verdict before its answer's header block arrived


class H2ProtocolError(Exception):
    """The server's bytes are not HTTP/2 this client can follow."""


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def never_indexed(index: int, value: bytes) -> bytes:
    """An HPACK literal header field never indexed, its name from the static table (RFC 7541 6.2.3)."""
    name = encode_integer(index, 4)
    name[0] |= 0x10
    return bytes(name) + bytes(encode_integer(len(value), 7)) + value


class Stream:
    """One request in flight: its slot (or send time), its answer's headers' verdict (None: correct) and, when its
    body comes in more than one DATA frame, the parts so far."""

    __slots__ = ("body", "due", "verdict")

    def __init__(self, due: float) -> None:
        self.due = due
        self.verdict: str | None = HEADLESS
        self.body: list[bytes] | None = None


class H2Conn(Conn):
    """One h2c connection: its streams in flight, its windows, its HPACK decoder and the bytes not yet a frame."""

    __slots__ = (
        "block", "block_end", "block_stream", "cache", "consumed", "decoder", "greeted", "next_id", "outbox",
        "pending", "refill", "send_window", "stream_window", "streams", "uploads", "windows",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, rec: Recorder, side: int = 0) -> None:
        super().__init__(sock, rec, side)
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.pending = b""  # received bytes that are not a whole frame yet
        self.greeted = False  # the server's preface (a SETTINGS frame, RFC 9113 3.4) was seen
        self.decoder = hpack.Decoder()
        self.cache: dict[bytes, str | None] = {}  # header blocks that leave the decoder's table as it is: verdicts
        self.block = b""  # a header block split over CONTINUATION frames
        self.block_stream = 0  # the stream whose header block is being read (0: none)
        self.block_end = False  # that HEADERS frame ended its stream
        self.consumed = 0  # DATA bytes received and not yet given back to the connection's window
        self.send_window = DEFAULT_WINDOW  # the connection's window for request bodies
        self.stream_window = DEFAULT_WINDOW  # each new stream's (the server's SETTINGS_INITIAL_WINDOW_SIZE)
        self.windows: dict[int, int] = {}  # streams with a body still to send: their windows
        self.outbox: list[bytes] = []  # frames to write at the end of the batch of events being handled
        self.refill = 0  # closed model: streams answered in what is being handled, each to get its next request
        self.uploads: dict[int, memoryview] = {}  # request bodies still to send, waiting for the server's window

    # --- flow control of request bodies (RFC 9113 6.9) ------------------------------------------------------------
    def pump(self, sid: int) -> bytes:
        """DATA frames for as much of the stream's request body as the server's windows allow; the rest waits for
        its WINDOW_UPDATE."""
        rest, out = self.uploads[sid], []
        while rest:
            size = min(len(rest), self.windows[sid], self.send_window, 16_384)  # the smallest frame size allowed
            if size <= 0:
                self.uploads[sid] = rest
                return b"".join(out)
            self.windows[sid] -= size
            self.send_window -= size
            out.append(frame(DATA, END_STREAM if size == len(rest) else 0, sid, rest[:size].tobytes()))
            rest = rest[size:]
        del self.uploads[sid], self.windows[sid]
        return b"".join(out)

    def settle(self, payload: bytes) -> None:
        """The server's SETTINGS: a new initial window changes every stream's window by the difference."""
        for at in range(0, len(payload) - 5, 6):
            key, value = int.from_bytes(payload[at : at + 2], "big"), int.from_bytes(payload[at + 2 : at + 6], "big")
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                change, self.stream_window = value - self.stream_window, value
                for sid in self.windows:
                    self.windows[sid] += change

    def grant(self, sid: int, increment: int) -> list[int]:
        """A WINDOW_UPDATE: the streams whose bodies may go on."""
        if sid == 0:
            self.send_window += increment
            return list(self.uploads)
        if sid in self.windows:
            self.windows[sid] += increment
            return [sid]
        return []


class H2Expected:
    """What a correct answer is over h2, and the verdicts on answers (None: correct): on a header block, decoded in
    order on its connection, and on a whole stream."""

    def __init__(self, plan: Plan) -> None:
        self.body, self.framing = plan.body, plan.framing
        self.content_type = plan.content_type.encode().lower()
        self.length = str(len(plan.body)).encode() if plan.framing == "length" else None
        self.status_bytes = str(plan.status).encode()

    def block(self, conn: H2Conn, block: bytes) -> str | None:
        """The check of an answer's header block (None: correct). A block that left the decoder's table as it was
        has its verdict cached: until a block changes the table, the same bytes decode the same; one that changes
        it empties the cache."""
        cache = conn.cache
        if block in cache:
            return cache[block]
        table = conn.decoder.header_table
        entries = table.dynamic_entries
        before = (id(entries[0]) if entries else 0, len(entries), table.maxsize)
        verdict = self.head(conn.decoder.decode(block, raw=True))
        if (id(entries[0]) if entries else 0, len(entries), table.maxsize) != before:
            cache.clear()
        elif len(cache) < 64:
            cache[block] = verdict
        return verdict

    def head(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The check of an answer's decoded headers (None: correct)."""
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
                return f"framing length, expected {self.framing}"
        elif length is None:
            return "framing without content-length, expected length"
        elif length != self.length:
            return f"content-length {length.decode(errors='replace')}, expected {self.length.decode()}"
        return None

    def whole(self, stream: Stream) -> str | None:
        """The verdict on a stream's answer from its headers' verdict and its body's parts (none: no DATA)."""
        if stream.verdict is not None:
            return stream.verdict
        body = b"".join(stream.body or ())
        return None if body == self.body else wrong_body(len(body), self.body)


class H2Handler:
    """The h2c connections of one side (flock.Handler), with `streams` requests in flight on each."""

    def __init__(self, flock: Flock, side: int) -> None:
        spec = flock.sides[side]
        plan, target = spec.plan, spec.target
        self.flock, self.side, self.plan, self.rec, self.streams = flock, side, plan, spec.recorder, spec.streams
        self.closed = flock.schedule is None  # the closed model: every answered stream's next request at once
        self.parking = flock.parking  # a group's slices: streams answered out of their side's turn wait for it
        self.ui_ms = flock.ui_ms
        self.body = plan.body  # the usual answer's one DATA frame is compared in handle() itself
        self.expected = H2Expected(plan)
        self.upload = plan.request.partition(b"\r\n\r\n")[2]
        method = {"GET": b"\x82", "POST": b"\x83"}.get(plan.method) or never_indexed(2, plan.method.encode())
        block = method + b"\x86" + never_indexed(1, f"{target.host}:{target.port}".encode())
        block += never_indexed(4, plan.path.encode())
        if self.upload or plan.method in ("POST", "PUT", "PATCH"):
            block += never_indexed(28, str(len(self.upload)).encode())
            block += never_indexed(31, b"application/octet-stream")
        self.block = block
        flags = END_HEADERS | (0 if self.upload else END_STREAM)
        self.request = struct.Struct(f">IBI{len(block)}s")  # the HEADERS frame: packed with its stream id
        self.request_head = (len(block) << 8 | HEADERS, flags)
        self.batching = False  # inside a batch of events: new requests are written once, at its end
        self.dirty: list[H2Conn] = []  # connections with frames in their outbox

    # --- connections ------------------------------------------------------------------------------------------
    def connection(self, sock: socket.socket) -> Conn:
        return H2Conn(sock, self.rec, self.side)

    def greet(self, conn: Conn) -> None:
        """The connection preface and SETTINGS (no push, the receive windows opened wide, as h2load's)."""
        assert isinstance(conn, H2Conn)
        settings = (SETTINGS_ENABLE_PUSH.to_bytes(2, "big") + (0).to_bytes(4, "big")
                    + SETTINGS_INITIAL_WINDOW_SIZE.to_bytes(2, "big") + WINDOW.to_bytes(4, "big"))  # fmt: skip
        self.put(conn, PREFACE + frame(SETTINGS, 0, 0, settings)
                 + frame(WINDOW_UPDATE, 0, 0, (WINDOW - DEFAULT_WINDOW).to_bytes(4, "big")))  # fmt: skip

    def start(self, conn: Conn, now: float) -> None:
        if self.closed:
            assert isinstance(conn, H2Conn)
            conn.refill = self.streams
            self.send_refill(conn)
        else:
            self.flock.idle.extend([conn] * self.streams)

    def put(self, conn: H2Conn, data: bytes) -> None:
        """Write now, or at the end of the batch of events being handled."""
        if self.batching:
            if not conn.outbox:
                self.dirty.append(conn)
            conn.outbox.append(data)
        elif conn.out:
            conn.out += data
        else:
            self.flock.write(conn, data)

    def send(self, conn: Conn, now: float, due: float | None = None) -> None:
        """A request on a new stream of conn, written at the next flush() with the batch's others."""
        self.batching = True
        self.send_next(conn, now, due)

    def send_next(self, conn: Conn, now: float, due: float | None = None) -> None:
        """Open a stream with the next request on conn; its answer is timed from `due` (its slot), else from now."""
        assert isinstance(conn, H2Conn)
        if due is not None:
            self.flock.late(conn.rec, due, now)
        sid = conn.next_id
        if sid > MAX_STREAM_ID:  # stream ids are spent: a new connection takes over
            conn.closing = True
            self.lost(conn, "h2: stream ids exhausted", now)
            return
        conn.next_id = sid + 2
        conn.streams[sid] = Stream(now if due is None else due)
        wire = self.request.pack(*self.request_head, sid, self.block)
        if self.upload:
            conn.uploads[sid] = memoryview(self.upload)
            conn.windows[sid] = conn.stream_window
            wire += conn.pump(sid)
        self.put(conn, wire)

    def send_refill(self, conn: H2Conn) -> None:
        """Closed model: a new request on each stream answered in what was just handled, in one write, all timed
        from now; in a group's slices, out of the side's turn, they wait for it."""
        count, conn.refill = conn.refill, 0
        if self.parking and self.side != self.flock.turn:
            self.flock.park(conn, count)
            return
        now = time.perf_counter()
        first = conn.next_id
        if self.upload or first + 2 * count > MAX_STREAM_ID:  # a body to pump, or stream ids running out
            for _ in range(count):
                if not conn.closing:
                    self.send_next(conn, now)
            return
        streams, pack, (length_kind, flags), block = conn.streams, self.request.pack, self.request_head, self.block
        wire = []
        for sid in range(first, first + 2 * count, 2):
            streams[sid] = Stream(now)
            wire.append(pack(length_kind, flags, sid, block))
        conn.next_id = first + 2 * count
        self.put(conn, b"".join(wire))

    def in_flight(self) -> int:
        return sum(len(c.streams) for c in self.flock.conns.values() if isinstance(c, H2Conn) and c.side == self.side)

    # --- what arrives -------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """The batch is over: each connection's frames in one write."""
        self.batching = False
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            parts, conn.outbox = conn.outbox, []
            if self.flock.conns.get(conn.fd) is conn:
                self.put(conn, parts[0] if len(parts) == 1 else b"".join(parts))

    def readable(self, conn: Conn, now: float, n: int | None = None) -> int:
        """Read what arrived (n bytes already read into the buffer by Flock.run, when given) and handle every frame
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
            self.flush()

    def handle(self, conn: H2Conn, data: bytes, now: float) -> int:
        """Every whole frame in what arrived; returns how many correct answers. In the closed model the streams
        answered get their next requests at the end, in one write."""
        if conn.pending:
            data = conn.pending + data
        if not conn.greeted:  # an HTTP/1.1 answer would read as a "frame" whose length is the letters "HTT"
            if len(data) < 4 or data[3] != SETTINGS:
                self.lost(conn, f"protocol: not an HTTP/2 server preface: {data[:24]!r}", now)
                return 0
            conn.greeted = True
        ok, at, end, unpack = 0, 0, len(data), FRAME_HEAD.unpack_from
        streams, cache, body = conn.streams, conn.cache, self.body
        try:
            while end - at >= 9:
                length_kind, flags, sid = unpack(data, at)
                start = at + 9
                stop = start + (length_kind >> 8)
                if stop > end:
                    break
                kind = length_kind & 0xFF
                sid &= MAX_STREAM_ID
                at = stop
                if conn.block_stream and kind != CONTINUATION:
                    raise H2ProtocolError("a header block interrupted before its end")
                # the two frames of a usual answer, handled here (the hot path): a head in one HEADERS frame, then
                # a body in one DATA frame after a correct head; every other case in data() and headers()
                if kind == HEADERS and flags & (END_HEADERS | PADDED | PRIORITY) == END_HEADERS:
                    block = data[start:stop]
                    verdict = cache.get(block, HEADLESS)
                    if verdict is HEADLESS:  # blocks are decoded in order: HPACK's table depends on it
                        verdict = self.expected.block(conn, block)
                    stream = streams.get(sid)
                    if stream is not None:
                        if stream.verdict is HEADLESS:
                            stream.verdict = verdict
                        if flags & END_STREAM:
                            del streams[sid]
                            ok += self.done(conn, stream, self.expected.whole(stream), now)
                elif kind == DATA:
                    stream = streams.get(sid)
                    if flags == END_STREAM and stream is not None and stream.verdict is None and stream.body is None:
                        del streams[sid]
                        conn.consumed += stop - start
                        if stop - start == len(body) and data.startswith(body, start):
                            ok += self.done(conn, stream, None, now)
                        else:
                            ok += self.done(conn, stream, wrong_body(stop - start, body), now)
                    else:
                        ok += self.data(conn, flags, sid, data, start, stop, now)
                elif kind in (HEADERS, CONTINUATION):
                    ok += self.headers(conn, kind, flags, sid, data[start:stop], now)
                elif kind == SETTINGS:
                    self.settings(conn, flags, data[start:stop])
                elif kind == WINDOW_UPDATE:
                    self.window_update(conn, sid, int.from_bytes(data[start : start + 4], "big") & MAX_STREAM_ID)
                elif kind == RST_STREAM:
                    self.reset(conn, sid, int.from_bytes(data[start : start + 4], "big"), now)
                elif kind == PING:
                    if not flags & ACK:
                        self.put(conn, frame(PING, ACK, 0, data[start:stop]))
                elif kind == GOAWAY:
                    code = int.from_bytes(data[start + 4 : start + 8], "big")
                    self.lost(conn, f"GOAWAY {code_name(code)}", now, goaway=True)
                    return ok
                elif kind == PUSH_PROMISE:
                    raise H2ProtocolError("PUSH_PROMISE, though the client's SETTINGS turned push off")
                if conn.closing:
                    return ok
        except (H2ProtocolError, hpack.HPACKError) as exc:
            self.lost(conn, f"protocol: h2 {type(exc).__name__}: {str(exc)[:60]}", now)
            return ok
        conn.pending = data[at:] if at < end else b""
        if conn.consumed >= WINDOW // 2:  # give the connection's window back in large steps
            self.put(conn, frame(WINDOW_UPDATE, 0, 0, conn.consumed.to_bytes(4, "big")))
            conn.consumed = 0
        if conn.refill:
            self.send_refill(conn)
        return ok

    def data(self, conn: H2Conn, flags: int, sid: int, data: bytes, start: int, stop: int, now: float) -> int:
        """A DATA frame, data[start:stop] its payload: an answer whose body is one frame is compared in place."""
        conn.consumed += stop - start  # flow control counts the padding too; given back at the end of handle()
        if flags & PADDED:
            stop -= data[start]
            start += 1
        stream = conn.streams.get(sid)
        if stream is None:
            return 0  # a stream already reset or given up
        if stream.verdict is HEADLESS:
            raise H2ProtocolError(f"DATA before HEADERS on stream {sid}")
        if stream.body is None:
            if flags & END_STREAM:
                del conn.streams[sid]
                body = self.body
                if stream.verdict is None and not (stop - start == len(body) and data.startswith(body, start)):
                    return self.done(conn, stream, wrong_body(stop - start, body), now)
                return self.done(conn, stream, stream.verdict, now)
            stream.body = []
        stream.body.append(data[start:stop])
        if flags & END_STREAM:
            del conn.streams[sid]
            return self.done(conn, stream, self.expected.whole(stream), now)
        return 0

    def headers(self, conn: H2Conn, kind: int, flags: int, sid: int, payload: bytes, now: float) -> int:
        if kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY:
                payload = payload[5:]
            conn.block_stream, conn.block_end = sid, bool(flags & END_STREAM)
        elif sid != conn.block_stream:
            raise H2ProtocolError("CONTINUATION without its HEADERS")
        if not flags & END_HEADERS:
            conn.block += payload
            return 0
        if conn.block:
            payload, conn.block = conn.block + payload, b""
        conn.block_stream = 0
        verdict = conn.cache.get(payload, HEADLESS)
        if verdict is HEADLESS:
            verdict = self.expected.block(conn, payload)  # blocks are decoded in order: HPACK's table depends on it
        stream = conn.streams.get(sid)
        if stream is None:
            return 0
        if stream.verdict is HEADLESS:
            stream.verdict = verdict
        # else trailers: nothing the apps send; only the end of the stream matters
        if conn.block_end:
            del conn.streams[sid]
            return self.done(conn, stream, self.expected.whole(stream), now)
        return 0

    def settings(self, conn: H2Conn, flags: int, payload: bytes) -> None:
        if flags & ACK:
            return
        conn.settle(payload)
        self.put(conn, frame(SETTINGS, ACK, 0))
        self.resume(conn, list(conn.uploads))

    def window_update(self, conn: H2Conn, sid: int, increment: int) -> None:
        self.resume(conn, conn.grant(sid, increment))

    def resume(self, conn: H2Conn, sids: list[int]) -> None:
        """Request bodies that waited for the server's window: as much more of each as it now allows."""
        for sid in sids:
            if sid in conn.uploads:
                wire = conn.pump(sid)
                if wire:
                    self.put(conn, wire)

    def reset(self, conn: H2Conn, sid: int, code: int, now: float) -> None:
        stream = conn.streams.pop(sid, None)
        conn.uploads.pop(sid, None)
        conn.windows.pop(sid, None)
        self.flock.error(f"RST_STREAM {code_name(code)}", conn.side)
        if stream is not None:
            self.ui_ms.append(int((now - stream.due) * 1000))
            self.again(conn, now)

    def done(self, conn: H2Conn, stream: Stream, error: str | None, now: float) -> int:
        """A stream's answer is whole and judged (error None: correct): time it, and use its slot again."""
        latency = int((now - stream.due) * 1_000_000 + 0.5)
        self.ui_ms.append(latency // 1000)
        ok = 0
        if error is None:
            rec = conn.rec
            if rec.recording and (self.closed or stream.due >= rec.opened):
                ok = 1
                rec.pending[latency] += 1
        else:
            self.flock.error(error, conn.side)
        if not conn.closing:  # the stream's slot is free (again(), inlined: this is the hot path)
            if self.closed:
                conn.refill += 1
            else:
                self.flock.free(conn, now)
        return ok

    def again(self, conn: H2Conn, now: float) -> None:
        """A stream's slot is free: a next request on it (closed model: at the end of what is being handled), or
        it waits for a slot (open)."""
        if conn.closing:
            return
        if self.closed:
            conn.refill += 1
        else:
            self.flock.free(conn, now)

    def lost(self, conn: H2Conn, reason: str, now: float, goaway: bool = False) -> None:
        """The connection is unusable (GOAWAY, a reset, bytes that are not HTTP/2): the reason counted once, each
        stream it leaves unanswered counted too (after a GOAWAY), and a new connection in its place."""
        flock = self.flock
        conn.closing = True
        flock.error(reason, conn.side)
        if goaway:
            for _ in range(len(conn.streams)):
                flock.error(f"{reason}: stream unanswered", conn.side)
        with contextlib.suppress(OSError):
            conn.sock.send(frame(GOAWAY, 0, 0, bytes(8)))
        conn.streams.clear()
        conn.outbox.clear()
        flock.close(conn)
        if flock.running and len(flock.conns) < max(flock.users, 1):
            fresh = flock.connect(now, conn.side)
            if fresh is not None:
                self.start(fresh, now)

    def failed(self, conn: Conn, reason: str, now: float) -> None:
        if isinstance(conn, H2Conn) and not conn.closing:
            self.lost(conn, reason, now)


def wrong_body(size: int, expected: bytes) -> str:
    return f"wrong body ({size} bytes, expected {len(expected)})"


def code_name(code: int) -> str:
    """An HTTP/2 error code by its name (NO_ERROR, PROTOCOL_ERROR, ...), or its number when it has none."""
    return ERROR_CODES[code] if 0 <= code < len(ERROR_CODES) else str(code)
