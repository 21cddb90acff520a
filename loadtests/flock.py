"""The lab's client: one loop per Locust worker process drives every connection of that process, as wrk does.

Each Locust user is one keep-alive connection. The loop waits on one epoll for all of them, reads into a buffer
preallocated per connection, checks every answer whole (status, content type, framing, body), records its latency in
microseconds and sends the next request: at once (closed model), or at the request's slot on the process's schedule
(open model). In the open model a slot that finds every connection busy goes out on a new connection, up to a bound;
past the bound it waits for the first free connection and its lateness is recorded, so the run stays open past
saturation. Latency counts from the send (closed) or from the slot (open), never from a late send.

The sockets and epoll are the operating system's own, not gevent's: the loop blocks in epoll for at most a few
milliseconds and yields to gevent's hub between batches, so Locust's heartbeats, its statistics and web UI keep
running. Locust's request statistics are updated in batches (a dict of milliseconds per flush), not per request.

A paired load (an A/B pair, lab/pairs.py) drives two servers from the same loop: every other user's connection goes
to the second one, which has a recorder of its own, and each side's correct answers are also counted per bucket of
the epoch, so that every worker process counts on the same clock. Together, both sides are loaded all the time; in
slices, only the side whose turn it is (A in even buckets, B in odd ones) sends, the other's connections wait until
its next turn, and only the answers after each slice's first settle seconds count.
"""

from __future__ import annotations

import contextlib
import random
import socket as stdlib_socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import gevent
from gevent import monkey

from loadtests import http1
from loadtests.http1 import ProtocolError
from loadtests.recorder import QUARTERS, Recorder
from loadtests.scenarios import Plan, Target

epoll = monkey.get_original("select", "epoll")
select = monkey.get_original("select", "select")
Socket = monkey.get_original("socket", "socket")
EPOLLIN, EPOLLOUT = 0x001, 0x004
BUFFER = 65536
POLL_WAIT = 0.005  # the longest the loop blocks in epoll before gevent's hub gets a turn
YIELD_EVERY = 0.002  # seconds of work between turns of gevent's hub
UI_EVERY = 0.5  # seconds between updates of Locust's own statistics (its web UI)
RETRY_AFTER = 0.01  # a connection that could not connect tries again after this long


@dataclass
class Pairing:
    """A paired load's second server and how the load is shared between the two (loadtests/load.py: PairResult)."""

    target: Target
    recorder: Recorder
    mode: str  # together or slices
    bucket: float  # seconds per bucket (together) or slice
    settle: float  # slices: seconds at each slice's start whose answers do not count

    @property
    def slices(self) -> bool:
        return self.mode == "slices"


@dataclass
class Schedule:
    """When this process's requests are due: Poisson arrivals at `rate` per second, or evenly spaced (uniform)."""

    rate: float
    arrivals: str = "poisson"
    phase: float = 0.0  # uniform only: this process's offset within one interval, so processes interleave
    seed: int | None = None

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.interval = 1.0 / self.rate

    def first(self, now: float) -> float:
        if self.arrivals == "uniform":
            return now + self.phase * self.interval
        return now + self.random.expovariate(self.rate)

    def after(self, slot: float) -> float:
        if self.arrivals == "uniform":
            return slot + self.interval
        return slot + self.random.expovariate(self.rate)


class Conn:
    """One keep-alive connection and its receive buffer."""

    __slots__ = (
        "buf", "closing", "due", "fd", "filled", "head", "out", "rec", "sent", "side", "sock", "whole", "ws_ready",
    )  # fmt: skip

    def __init__(self, sock: stdlib_socket.socket, rec: Recorder, side: int = 0) -> None:
        self.sock = sock
        self.rec = rec  # the recorder of its side
        self.side = side  # 0, or 1 for a paired load's second server
        self.fd = sock.fileno()
        self.buf = bytearray(BUFFER)
        self.filled = 0
        self.head = b""  # the last validated response head: identical heads skip the header checks
        self.whole = -1  # the length of an answer with that head and the expected body
        self.out = b""  # bytes still to send (a large request that did not fit the socket buffer)
        self.sent = 0.0  # when the request in flight went out
        self.due = 0.0  # its slot (open model), or its send time (closed)
        self.ws_ready = False
        self.closing = False  # the server said Connection: close


class Flock:
    """All connections of one load-generator process, driven by one loop (a greenlet)."""

    def __init__(
        self,
        plan: Plan,
        target: Target,
        recorder: Recorder,
        report: Callable[[Counter[int], int, int, str | None], None],
        schedule: Schedule | None = None,
        max_connections: int = 1024,
        pair: Pairing | None = None,
    ) -> None:
        self.plan, self.target, self.recorder, self.report = plan, target, recorder, report
        self.pair = pair
        self.targets = (target, pair.target) if pair else (target,)
        self.recorders = (recorder, pair.recorder) if pair else (recorder,)
        self.parked: tuple[list[Conn], ...] = ([], [])  # slices: connections waiting for their side's turn
        self.turn = 0  # slices: the side whose turn it is
        self.wall = 0.0  # the epoch minus perf_counter(), set when the loop starts
        self.schedule = schedule
        self.max_connections = max_connections
        self.ep = epoll()
        self.conns: dict[int, Conn] = {}
        self.idle: deque[Conn] = deque()  # open model: connections with nothing in flight
        self.backlog: deque[float] = deque()  # open model: slots that found no free connection
        self.retry: list[tuple[float, int]] = []  # when a connection that failed to connect tries again, and its side
        self.users = 0
        self.next_due = 0.0
        self.running = False
        self.loop: gevent.Greenlet | None = None
        self.ui_ms: list[int] = []  # milliseconds of the answers since the last update of Locust's statistics
        self.ui_errors: list[str] = []
        # what a well-framed, correct answer looks like, in bytes, for the checks
        self.expected = http1.Expected.of(plan)
        self.body = plan.body
        self.wrong_same_length = self.expected.wrong_body(len(plan.body))

    # --- users come and go ----------------------------------------------------------------------------------
    def join(self) -> None:
        """A Locust user started: one more connection (or, if it cannot connect, one that retries)."""
        self.users += 1
        if not self.running:
            self.running = True
            self.loop = gevent.spawn(self.run)
        now = time.perf_counter()
        conn = self.connect(now, (self.users - 1) % len(self.targets))
        if conn is not None:
            self.start(conn, now)

    def leave(self) -> None:
        """A Locust user stopped: one connection fewer; the last one out ends the loop."""
        self.users -= 1
        if self.conns and len(self.conns) > self.users:
            self.close(next(reversed(self.conns.values())))
        if self.users <= 0:
            self.stop()

    def stop(self) -> None:
        self.running = False
        for conn in list(self.conns.values()):
            self.close(conn)
        self.retry.clear()
        self.flush_ui()

    # --- connections ------------------------------------------------------------------------------------------
    def connect(self, now: float, side: int = 0) -> Conn | None:
        sock = Socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
        target = self.targets[side]
        try:
            sock.connect((target.host, target.port))
        except OSError as exc:
            sock.close()
            self.error(f"connect: {type(exc).__name__}", side)
            self.retry.append((now + RETRY_AFTER, side))
            return None
        sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = Conn(sock, self.recorders[side], side)
        self.conns[conn.fd] = conn
        if self.recorder.recording:
            self.recorder.peak_connections = max(self.recorder.peak_connections, len(self.conns))
        self.ep.register(conn.fd, EPOLLIN)
        if self.plan.websocket:
            self.write(conn, self.plan.handshake(self.target))
        return conn

    def close(self, conn: Conn) -> None:
        if self.conns.pop(conn.fd, None) is not None:
            with contextlib.suppress(OSError):
                self.ep.unregister(conn.fd)
            conn.sock.close()
        if conn in self.idle:
            self.idle.remove(conn)
        if conn in self.parked[conn.side]:
            self.parked[conn.side].remove(conn)

    def reconnect(self, conn: Conn, now: float) -> None:
        """After an error that leaves the connection unusable: a new connection takes its place."""
        self.close(conn)
        if not self.running or (self.schedule is None and len(self.conns) >= max(self.users, 1)):
            return
        fresh = self.connect(now, conn.side)
        if fresh is not None:
            self.start(fresh, now)

    def start(self, conn: Conn, now: float) -> None:
        """A new connection's first request goes out at once (closed model) or waits for a slot (open); a
        websocket's waits for the handshake's answer."""
        if self.plan.websocket:
            return
        if self.schedule is None:
            self.next_closed(conn)
        else:
            self.free(conn, now)

    def next_closed(self, conn: Conn) -> None:
        """The closed model's next request on conn, at once; in slices, only in its side's turn."""
        if self.pair is not None and self.pair.slices and conn.side != self.turn:
            self.parked[conn.side].append(conn)
        else:
            self.send_next(conn, time.perf_counter())

    def write(self, conn: Conn, data: bytes) -> None:
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.write_failed(conn, exc)
            return
        if sent < len(data):
            conn.out = data[sent:]
            with contextlib.suppress(OSError):  # a connection closed meanwhile is no longer polled
                self.ep.modify(conn.fd, EPOLLIN | EPOLLOUT)

    def write_failed(self, conn: Conn, exc: OSError) -> None:
        """A send failed: the error named, a new connection in its place."""
        self.error(type(exc).__name__, conn.side)
        self.reconnect(conn, time.perf_counter())

    def send_next(self, conn: Conn, now: float, due: float | None = None) -> None:
        """Send the next request on conn: due is its slot in the open model (latency counts from there)."""
        conn.sent = now
        conn.due = now if due is None else due
        if due is not None and self.counts(conn):
            self.recorder.late[int((now - due) * 1_000_000 + 0.5)] += 1
        self.write(conn, self.plan.request)

    def counts(self, conn: Conn) -> bool:
        """Whether conn's answer counts in the measured window: any answered while it is open (closed model); in the
        open model only one whose slot was due inside it — an answer in the window to a slot due before it (a backlog
        left by a stall in the warm-up) is neither the window's throughput nor its latency."""
        rec = conn.rec
        return rec.recording and (self.schedule is None or conn.due >= rec.opened)

    # --- the open model: slots, free connections, the backlog -------------------------------------------------
    def free(self, conn: Conn, now: float) -> None:
        """conn finished its request: the oldest slot still waiting takes it, or it waits for the next slot."""
        if self.backlog:
            self.send_next(conn, now, self.backlog.popleft())
        else:
            self.idle.append(conn)

    def release_due(self, now: float) -> None:
        schedule = self.schedule
        assert schedule is not None
        while self.next_due <= now:
            slot, self.next_due = self.next_due, schedule.after(self.next_due)
            self.recorder.scheduled += self.recorder.recording and slot >= self.recorder.opened
            if self.idle:
                self.send_next(self.idle.popleft(), time.perf_counter(), slot)
            elif len(self.conns) < self.max_connections and not self.plan.websocket:
                conn = self.connect(now)
                if conn is not None:
                    self.send_next(conn, time.perf_counter(), slot)
                else:
                    self.backlog.append(slot)
            else:
                self.backlog.append(slot)

    def owed(self) -> int:
        """Slots due but not answered: waiting for a connection, or in flight."""
        in_flight = len(self.conns) - len(self.idle) if self.schedule else 0
        return len(self.backlog) + in_flight

    # --- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        ep, conns, recs, ui_ms = self.ep, self.conns, self.recorders, self.ui_ms
        perf = time.perf_counter
        request, body = self.plan.request, self.body
        request_len, body_len = len(request), len(body)
        fast = self.schedule is None and not self.plan.websocket
        pair, parked = self.pair, self.parked
        parking = pair is not None and pair.slices
        self.wall = time.time() - perf()  # perf_counter() + wall = the epoch, on which a pair's buckets are counted
        done = [0, 0]  # correct answers per side in one turn of the loop
        last_yield = last_ui = perf()
        if self.schedule is not None:
            self.next_due = self.schedule.first(perf())
        while self.running:
            timeout = POLL_WAIT
            if self.schedule is not None:
                wait = self.next_due - perf()
                if wait < 0.002:  # epoll waits in whole milliseconds (rounded up): the last stretch with select,
                    if wait > 0:  # which has microseconds
                        select([ep.fileno()], [], [], wait)
                    timeout = 0
                else:
                    timeout = min(timeout, wait - 0.001)
            events = ep.poll(timeout)
            now = perf()
            done[0] = done[1] = 0
            for fd, mask in events:
                conn = conns.get(fd)
                if conn is None:
                    continue
                if mask & EPOLLOUT and conn.out:
                    pending, conn.out = conn.out, b""
                    self.ep.modify(fd, EPOLLIN)
                    self.write(conn, pending)
                if not mask & ~EPOLLOUT:
                    continue
                if fast and conn.filled == 0:  # the common case, kept short: one whole, correct answer, then send
                    try:
                        n = conn.sock.recv_into(conn.buf)
                    except BlockingIOError:
                        continue
                    except OSError as exc:  # as the general path: the error named, a new connection in its place
                        self.error(type(exc).__name__, conn.side)
                        self.reconnect(conn, now)
                        continue
                    buf = conn.buf
                    if n == conn.whole and buf.startswith(conn.head) and buf.startswith(body, n - body_len):
                        latency = int((now - conn.due) * 1_000_000 + 0.5)
                        ui_ms.append(latency // 1000)
                        rec = conn.rec
                        if rec.recording:
                            rec.pending[latency] += 1
                        done[conn.side] += 1
                        if parking and conn.side != self.turn:
                            parked[conn.side].append(conn)
                            continue
                        conn.sent = conn.due = perf()
                        try:
                            sent = conn.sock.send(request)
                        except OSError:
                            sent = -1
                        if sent != request_len:
                            self.write(conn, request[max(sent, 0) :])  # the rare case: the general path
                        continue
                    done[conn.side] += self.readable(conn, now, n)
                    continue
                done[conn.side] += self.readable(conn, now)
            for side, rec in enumerate(recs):
                if done[side] and rec.recording:
                    rec.per_quarter[int((now - rec.opened) * QUARTERS)] += done[side]
                    if pair is not None:
                        self.count_bucket(rec, side, done[side], now)
            if parking:
                self.take_turns(now)
            if self.schedule is not None:
                self.release_due(perf())
            if self.retry and self.retry[0][0] <= now:
                self.retry_connections(now)
            if now - last_yield >= YIELD_EVERY or not events:
                if now - last_ui >= UI_EVERY:
                    self.flush_ui()
                    last_ui = now
                gevent.sleep(0)
                last_yield = perf()

    def count_bucket(self, rec: Recorder, side: int, answers: int, now: float) -> None:
        """A paired load's answers of one side in this turn of the loop, into its bucket of the epoch; in slices, only
        in the side's own turn and after the slice's settle time."""
        pair = self.pair
        assert pair is not None
        at = now + self.wall
        bucket = int(at / pair.bucket)
        if pair.slices and (bucket % 2 != side or at - bucket * pair.bucket < pair.settle):
            return
        rec.buckets[bucket] += answers

    def take_turns(self, now: float) -> None:
        """Slices: at a new slice, the side whose turn it is sends on every connection that waited for it."""
        pair = self.pair
        assert pair is not None
        turn = int((now + self.wall) / pair.bucket) % 2
        if turn != self.turn:
            self.turn = turn
            waiting, self.parked[turn][:] = list(self.parked[turn]), []
            for conn in waiting:
                self.send_next(conn, time.perf_counter())

    def retry_connections(self, now: float) -> None:
        self.retry.sort()
        while self.retry and self.retry[0][0] <= now and self.running:
            side = self.retry.pop(0)[1]
            if len(self.conns) < max(self.users, 1):
                conn = self.connect(now, side)
                if conn is not None:
                    self.start(conn, now)

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
        if n is None:
            try:
                n = self.receive(conn)
            except BlockingIOError:
                return 0
            except OSError as exc:
                self.error(type(exc).__name__, conn.side)
                self.reconnect(conn, now)
                return 0
        if n == 0:
            self.error("server closed the connection", conn.side)
            self.reconnect(conn, now)
            return 0
        conn.filled += n
        ok = 0
        while conn.filled:
            try:
                used, error = self.answer_ws(conn) if self.plan.websocket else self.answer(conn)
            except ProtocolError as exc:
                self.error(f"protocol: {exc}", conn.side)
                self.reconnect(conn, now)
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
                self.ui_ms.append(latency // 1000)
                if error is None:
                    if self.counts(conn):
                        ok += 1
                        conn.rec.pending[latency] += 1
                else:
                    self.error(error, conn.side)
            if conn.closing:
                self.reconnect(conn, now)
                return ok
            if self.schedule is None:
                self.next_closed(conn)
            else:
                self.free(conn, now)
        return ok

    # --- answers ----------------------------------------------------------------------------------------------
    def answer(self, conn: Conn) -> tuple[int, str | None]:
        """(bytes used, None if correct else the reason) for the HTTP answer at the buffer's start; (0, None)
        while it is incomplete."""
        buf, filled, head = conn.buf, conn.filled, conn.head
        if head and buf.startswith(head):  # the same head as the last correct answer: only the body is new
            end = conn.whole
            if filled < end:
                return 0, None
            return end, None if buf.startswith(self.body, len(head)) else self.wrong_same_length
        response = http1.read(buf, filled)
        if response is None:
            return 0, None
        if response.close:
            conn.closing = True
        error = self.expected.verdict(response)
        if error is None and response.framing == "length" and not response.close:
            conn.head, conn.whole = response.head, response.end
        return response.end, error

    def answer_ws(self, conn: Conn) -> tuple[int, str | None]:
        """The handshake's answer (error "" when it is the 101), then one echoed frame per request."""
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
        return end, None if got == self.body else f"wrong echo ({len(got)} bytes, expected {len(self.body)})"

    # --- errors and Locust's statistics -----------------------------------------------------------------------
    def error(self, reason: str, side: int = 0) -> None:
        rec = self.recorders[side]
        if rec.recording:
            rec.errors[reason] += 1
        self.ui_errors.append(reason)

    def flush_ui(self) -> None:
        if self.ui_ms or self.ui_errors:
            ms, errors = self.ui_ms, self.ui_errors
            self.ui_ms, self.ui_errors = [], []
            self.report(Counter(ms), len(ms), len(self.body) * len(ms), None)
            for reason in errors:
                self.report(Counter(), 0, 0, reason)
