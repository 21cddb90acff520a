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

What a connection says is its side's handler's (`Handler`), chosen per side in one place (HANDLERS): HTTP/1.1, and
websockets over it (loadtests/h1flock.py), or h2c (loadtests/h2flock.py). The loop owns the rest: connections, epoll,
both models' scheduling, a group's buckets and turns, Locust's statistics, the errors. Its one protocol-specific part
is its fast path, kept inline because it is what makes the client fast: a read that is exactly a connection's `known`
answer (an HTTP/1.1 connection's last correct answer, head and body, byte for byte) is counted and followed by the
side's next request right in the loop.

A group load (an A/B pair, lab/measure/pair.py, or more servers) drives several servers, its sides, from the same loop:
the users' connections go to each side in turn, each side has its own plan (its Host, its protocol) and recorder, and
each side's correct answers are also counted per bucket of the epoch, so that every worker process counts on the
same clock. Together, every side is loaded all the time; in slices, only the side whose turn it is (side k in the
buckets numbered k modulo the number of sides: A in even buckets and B in odd ones for a pair) sends, the others'
connections wait until their turn, and only the answers after each slice's first settle seconds count.
"""

from __future__ import annotations

import contextlib
import importlib
import random
import socket as stdlib_socket
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import gevent
from gevent import monkey

from core.loopback import refuse_itself
from loadtests.recorder import QUARTERS, Recorder
from loadtests.scenarios import Plan, Target
from servers.matrix import HttpVersion

epoll = monkey.get_original("select", "epoll")
select = monkey.get_original("select", "select")
Socket = monkey.get_original("socket", "socket")
EPOLLIN, EPOLLOUT = 0x001, 0x004
BUFFER = 65536
POLL_WAIT = 0.005  # the longest the loop blocks in epoll before gevent's hub gets a turn
YIELD_EVERY = 0.002  # seconds of work between turns of gevent's hub
UI_EVERY = 0.5  # seconds between updates of Locust's own statistics (its web UI)
RETRY_AFTER = 0.01  # a connection that could not connect tries again after this long
# Each side's handler by what it speaks ("ws": a websocket scenario over HTTP/1.1), imported when first chosen.
HANDLERS = {
    "h1": "loadtests.h1flock:H1Handler", "ws": "loadtests.h1flock:WsHandler", "h2": "loadtests.h2flock:H2Handler",
}  # fmt: skip


@dataclass
class Side:
    """One server of the load: where it is, what to send it and what must come back (its own Host), its recorder,
    and the protocol spoken to it."""

    target: Target
    plan: Plan
    recorder: Recorder
    http: HttpVersion = "h1"
    streams: int = 1  # h2: requests in flight per connection


@dataclass
class Group:
    """How a group load shares itself between its sides (loadtests/load.py: GroupResult)."""

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
    """One keep-alive connection: its socket, its receive buffer, its side, and the answer the loop may take whole."""

    __slots__ = ("buf", "closing", "due", "fd", "filled", "known", "out", "rec", "side", "sock", "whole")

    def __init__(self, sock: stdlib_socket.socket, rec: Recorder, side: int = 0) -> None:
        self.sock = sock
        self.rec = rec  # the recorder of its side
        self.side = side  # its server's index among the load's sides
        self.fd = sock.fileno()
        self.buf = bytearray(BUFFER)
        self.filled = 0
        self.known = b""  # an answer the fast path takes whole: a read of exactly these bytes is a correct answer
        self.whole = -1  # its length (-1: none)
        self.out = b""  # bytes still to send (a large request that did not fit the socket buffer)
        self.due = 0.0  # the request in flight's slot (open model), or its send time (closed)
        self.closing = False  # the connection is being given up (HTTP/1.1: the server said Connection: close)


class Handler(Protocol):
    """How the connections of one side speak: the loop (Flock) owns the sockets, epoll, the schedule and the counting;
    a handler writes a connection's requests and reads, frames and judges its answers."""

    def connection(self, sock: stdlib_socket.socket) -> Conn:
        """A new connection's own state, connected, nothing sent yet."""
        ...

    def greet(self, conn: Conn) -> None:
        """What a new connection sends before any request: h2's preface, a websocket's handshake."""
        ...

    def start(self, conn: Conn, now: float) -> None:
        """A new connection's first requests (closed model), or its free slots offered to the schedule (open)."""
        ...

    def send(self, conn: Conn, now: float, due: float | None = None) -> None:
        """One request on conn, timed from `due` (its slot, open model) or from now; it may wait for flush()."""
        ...

    def flush(self) -> None:
        """Write what send() held back: h2 writes a batch's requests once per connection."""
        ...

    def readable(self, conn: Conn, now: float, n: int | None = None) -> int:
        """Read what arrived (n bytes already read into conn.buf, when given) and handle every whole answer in it;
        returns how many were correct and counted."""
        ...

    def failed(self, conn: Conn, reason: str, now: float) -> None:
        """conn is unusable (its socket failed): the reason counted, a new connection in its place."""
        ...

    def in_flight(self) -> int:
        """This side's requests sent and not answered: the open model's owed slots in flight."""
        ...


def first_user(index: int, processes: int, users: int) -> int:
    """The number of worker `index`'s first user among all processes' `users`, as if they were numbered worker by
    worker: Locust gives each worker an even share, the first ones one more. Each worker's users go to a group's
    servers in turn from there, so that each server gets its share of all of them (exactly, when Locust's extra users
    went to the workers with the lowest indexes)."""
    share, extra = divmod(users, processes)
    return index * share + min(index, extra)


def handler_for(flock: Flock, side: int) -> Handler:
    """The handler for one side of the flock, by what it speaks."""
    spec = flock.sides[side]
    if spec.plan.websocket and spec.http != "h1":
        raise ValueError("a websocket is an HTTP/1.1 upgrade: the h2 client runs no websocket")
    module, name = HANDLERS["ws" if spec.plan.websocket else spec.http].split(":")
    made: Handler = getattr(importlib.import_module(module), name)(flock, side)
    return made


class Flock:
    """All connections of one load-generator process, driven by one loop (a greenlet)."""

    def __init__(
        self,
        sides: Sequence[Side],
        report: Callable[[Counter[int], int, int, str | None], None],
        schedule: Schedule | None = None,
        max_connections: int = 1024,
        group: Group | None = None,
        first_user: int = 0,
    ) -> None:
        if (len(sides) > 1) != (group is not None) or (group is not None and schedule is not None):
            raise ValueError("a group load has several sides, a Group to share them, and runs the closed model")
        self.sides = tuple(sides)
        self.recorders = tuple(side.recorder for side in sides)
        self.recorder = self.recorders[0]  # the first side's: the open model's (it has one side)
        self.report, self.schedule, self.max_connections, self.group = report, schedule, max_connections, group
        self.parking = group is not None and group.slices  # slices: connections wait for their side's turn
        self.parked: tuple[list[Conn], ...] = tuple([] for _ in sides)
        self.turn = 0  # slices: the side whose turn it is
        self.wall = 0.0  # the epoch minus perf_counter(), set when the loop starts
        self.first_user = first_user  # this process's first user's number among all processes': its first side
        self.ep = epoll()
        self.conns: dict[int, Conn] = {}
        self.idle: deque[Conn] = deque()  # open model: one entry per free request slot (a connection, or h2 stream)
        self.backlog: deque[float] = deque()  # open model: slots that found no free connection
        self.retry: list[tuple[float, int]] = []  # when a connection that failed to connect tries again, and its side
        self.users = 0
        self.next_due = 0.0
        self.running = False
        self.loop: gevent.Greenlet | None = None
        self.ui_ms: list[int] = []  # milliseconds of the answers since the last update of Locust's statistics
        self.ui_errors: list[str] = []
        self.handlers = tuple(handler_for(self, side) for side in range(len(self.sides)))

    # --- users come and go ----------------------------------------------------------------------------------
    def join(self) -> None:
        """A Locust user started: one more connection (or, if it cannot connect, one that retries)."""
        self.users += 1
        if not self.running:
            self.running = True
            self.loop = gevent.spawn(self.run)
        now = time.perf_counter()
        side = (self.first_user + self.users - 1) % len(self.sides)
        conn = self.connect(now, side)
        if conn is not None:
            self.handlers[side].start(conn, now)

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
        target = self.sides[side].target
        try:
            sock.connect((target.host, target.port))
            refuse_itself(sock)  # core/loopback.py: a server down (restarting) must not find its port held
        except OSError as exc:
            sock.close()
            self.error(f"connect: {type(exc).__name__}", side)
            self.retry.append((now + RETRY_AFTER, side))
            return None
        sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        handler = self.handlers[side]
        conn = handler.connection(sock)
        self.conns[conn.fd] = conn
        if self.recorder.recording:
            self.recorder.peak_connections = max(self.recorder.peak_connections, len(self.conns))
        self.ep.register(conn.fd, EPOLLIN)
        handler.greet(conn)
        return conn

    def close(self, conn: Conn) -> None:
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
            with contextlib.suppress(OSError):
                self.ep.unregister(conn.fd)
            conn.sock.close()
        if conn in self.idle:
            self.idle = deque(c for c in self.idle if c is not conn)
        parked = self.parked[conn.side]
        if conn in parked:
            parked[:] = [c for c in parked if c is not conn]

    def reconnect(self, conn: Conn, now: float) -> None:
        """After an error that leaves the connection unusable: a new connection takes its place."""
        self.close(conn)
        if not self.running or (self.schedule is None and len(self.conns) >= max(self.users, 1)):
            return
        fresh = self.connect(now, conn.side)
        if fresh is not None:
            self.handlers[conn.side].start(fresh, now)

    def write(self, conn: Conn, data: bytes) -> None:
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.handlers[conn.side].failed(conn, type(exc).__name__, time.perf_counter())
            return
        if sent < len(data):
            conn.out = data[sent:]
            with contextlib.suppress(OSError):  # a connection closed meanwhile is no longer polled
                self.ep.modify(conn.fd, EPOLLIN | EPOLLOUT)

    # --- the next request: at once, after a turn, or at a slot ------------------------------------------------
    def next_closed(self, conn: Conn) -> None:
        """The closed model's next request on conn, at once; in slices, only in its side's turn."""
        if self.parking and conn.side != self.turn:
            self.parked[conn.side].append(conn)
        else:
            self.handlers[conn.side].send(conn, time.perf_counter())

    def counts(self, rec: Recorder, due: float) -> bool:
        """Whether an answer counts in the measured window: any answered while it is open (closed model); in the open
        model only one whose slot was due inside it — an answer in the window to a slot due before it (a backlog left
        by a stall in the warm-up) is neither the window's throughput nor its latency."""
        return rec.recording and (self.schedule is None or due >= rec.opened)

    def late(self, rec: Recorder, due: float, now: float) -> None:
        """The open model: a request sent `now` for its slot `due`, its lateness recorded."""
        if self.counts(rec, due):
            rec.late[int((now - due) * 1_000_000 + 0.5)] += 1

    def free(self, conn: Conn, now: float) -> None:
        """The open model: a request slot of conn is free; the oldest slot still waiting takes it, or it waits for
        the next slot."""
        if self.backlog:
            self.handlers[conn.side].send(conn, now, self.backlog.popleft())
        else:
            self.idle.append(conn)

    def release_due(self, now: float) -> None:
        schedule, handler, rec = self.schedule, self.handlers[0], self.recorder
        assert schedule is not None
        while self.next_due <= now:
            slot, self.next_due = self.next_due, schedule.after(self.next_due)
            rec.scheduled += rec.recording and slot >= rec.opened
            if self.idle:
                handler.send(self.idle.popleft(), time.perf_counter(), slot)
            elif len(self.conns) < self.max_connections and not self.sides[0].plan.websocket:
                conn = self.connect(now)
                if conn is not None:
                    handler.send(conn, time.perf_counter(), slot)
                else:
                    self.backlog.append(slot)
            else:
                self.backlog.append(slot)
        handler.flush()

    def owed(self) -> int:
        """Slots due but not answered: waiting for a connection, or in flight."""
        in_flight = sum(handler.in_flight() for handler in self.handlers) if self.schedule else 0
        return len(self.backlog) + in_flight

    # --- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        ep, conns, recs, ui_ms, handlers = self.ep, self.conns, self.recorders, self.ui_ms, self.handlers
        perf = time.perf_counter
        requests = tuple(side.plan.request for side in self.sides)  # the fast path's next request (HTTP/1.1)
        sizes = tuple(len(request) for request in requests)
        fast = self.schedule is None
        group, parked, parking = self.group, self.parked, self.parking
        nothing = [0] * len(self.sides)
        self.wall = time.time() - perf()  # perf_counter() + wall = the epoch, on which a group's buckets are counted
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
            done = nothing.copy()  # correct answers per side in this turn of the loop
            for fd, mask in events:
                conn = conns.get(fd)
                if conn is None:
                    continue
                if mask & EPOLLOUT and conn.out:
                    pending, conn.out = conn.out, b""
                    ep.modify(fd, EPOLLIN)
                    self.write(conn, pending)
                if not mask & ~EPOLLOUT:
                    continue
                if fast and conn.filled == 0:  # the common case, kept short: one whole, correct answer, then send
                    try:
                        n = conn.sock.recv_into(conn.buf)
                    except BlockingIOError:
                        continue
                    except OSError as exc:  # as the general path: the error named, a new connection in its place
                        handlers[conn.side].failed(conn, type(exc).__name__, now)
                        continue
                    if n == conn.whole and conn.buf.startswith(conn.known):
                        latency = int((now - conn.due) * 1_000_000 + 0.5)
                        ui_ms.append(latency // 1000)
                        rec = conn.rec
                        if rec.recording:
                            rec.pending[latency] += 1
                        side = conn.side
                        done[side] += 1
                        if parking and side != self.turn:
                            parked[side].append(conn)
                            continue
                        conn.due = perf()
                        request = requests[side]
                        try:
                            sent = conn.sock.send(request)
                        except OSError:
                            sent = -1
                        if sent != sizes[side]:
                            self.write(conn, request[max(sent, 0) :])  # the rare case: the general path
                        continue
                    done[conn.side] += handlers[conn.side].readable(conn, now, n)
                    continue
                done[conn.side] += handlers[conn.side].readable(conn, now)
            for side, rec in enumerate(recs):
                if done[side] and rec.recording:
                    rec.per_quarter[int((now - rec.opened) * QUARTERS)] += done[side]
                    if group is not None:
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
        """A group load's answers of one side in this turn of the loop, into its bucket of the epoch; in slices, only
        in the side's own turn and after the slice's settle time."""
        group = self.group
        assert group is not None
        at = now + self.wall
        bucket = int(at / group.bucket)
        if group.slices and (bucket % len(self.sides) != side or at - bucket * group.bucket < group.settle):
            return
        rec.buckets[bucket] += answers

    def take_turns(self, now: float) -> None:
        """Slices: at a new slice, the side whose turn it is sends on every connection that waited for it."""
        group = self.group
        assert group is not None
        turn = int((now + self.wall) / group.bucket) % len(self.sides)
        if turn != self.turn:
            self.turn = turn
            waiting, self.parked[turn][:] = list(self.parked[turn]), []
            handler = self.handlers[turn]
            for conn in waiting:
                handler.send(conn, time.perf_counter())
            handler.flush()

    def park(self, conn: Conn, slots: int = 1) -> None:
        """Slices: `slots` requests of conn wait for its side's next turn."""
        self.parked[conn.side].extend([conn] * slots)

    def retry_connections(self, now: float) -> None:
        self.retry.sort()
        while self.retry and self.retry[0][0] <= now and self.running:
            side = self.retry.pop(0)[1]
            if len(self.conns) < max(self.users, 1):
                conn = self.connect(now, side)
                if conn is not None:
                    self.handlers[side].start(conn, now)

    # --- errors and Locust's statistics -----------------------------------------------------------------------
    def error(self, reason: str, side: int = 0) -> None:
        rec = self.recorders[side]
        if rec.recording:
            rec.errors[reason] += 1
        self.ui_errors.append(reason)

    def flush_ui(self) -> None:
        """Locust's statistics brought up to date. The lists are emptied in place: the loop and the handlers hold
        them."""
        if self.ui_ms or self.ui_errors:
            ms, errors = Counter(self.ui_ms), list(self.ui_errors)
            answers = len(self.ui_ms)
            self.ui_ms.clear()
            self.ui_errors.clear()
            self.report(ms, answers, len(self.sides[0].plan.body) * answers, None)
            for reason in errors:
                self.report(Counter(), 0, 0, reason)
