"""The stop test's load: an open-model schedule of short and long requests and a few idle keep-alive connections,
while the target side sends SIGTERM at a set time (lab/lifecycle.py); every scheduled request ends in exactly one
outcome, counted here.

The client is the lab's own design (loadtests/flock.py): one epoll loop over non-blocking sockets, requests encoded
once from the scenarios' Plans, each answer framed and checked whole (status, content type, framing, body) as every
HTTP/1.1 client of the lab does it (loadtests/http1.py). Unlike flock it never hides a failure behind a reconnect: a
request that met a reset, a close or a refusal keeps that outcome, and connects are non-blocking, so a server that
stopped accepting cannot stall the loop. In the open model a slot takes an idle connection, else opens one (up to a
bound), else waits for the first one free; latency counts from the slot.
"""

from __future__ import annotations

import bisect
import errno
import itertools
import random
import select
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from pydantic import Field

from core.loopback import refuse_itself, to_itself
from core.model import Record
from loadtests import http1
from loadtests.scenarios import Plan, Target

OUTCOMES = {
    "ok": "answered correctly",
    "error": "answered with an error status or a wrong answer",
    "reset": "the connection was reset before the whole answer",
    "closed": "the server closed the connection without a (whole) answer",
    "refused": "the connection was refused: nothing listened any more",
    "never_sent": "still waiting for a connection when the test ended",
    "timeout": "sent, but neither answered nor closed when the test ended",
}
LOST = ("error", "reset", "closed", "timeout")  # reached the server and got no proper answer: not safe to retry blindly
KINDS = ("short", "long")
BUCKET = 0.01  # seconds per bar of the timeline
RECOVERY = 0.1  # seconds per window in which answers count as back at the pre-signal rate (Service.recovered)
BUFFER = 65536
EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x001, 0x004, 0x008, 0x010


class Service(Record):
    """The gap in service around the signal, from the correct answers' completion times (seconds from the signal)."""

    rate_before: float  # correct answers per second over the schedule before the signal
    longest_gap: float  # the longest interval with no correct answer completed, over the whole schedule...
    gap_from: float  # ...and when it began
    longest_gap_before: float  # the same before the signal only: what the load's own randomness gives
    recovered: float | None  # the end of the last RECOVERY-second window after the signal with fewer correct answers
    # than half the pre-signal rate gives one (0: none); None: the schedule ended in such a window (never recovered)


class LostRequest(Record):
    """A request due before the signal and lost: its times in seconds from the signal, and its outcome."""

    due: float
    sent: float | None
    ended: float
    outcome: str
    reused: bool  # it went out on a keep-alive connection that had answered before


class StopLoad(Record):
    """One stop (or restart) test as the client saw it; times in seconds from the signal (SIGTERM, or the restart's).
    `before` and `after` are the schedule as run: a restart's is cut short once its new workers serve."""

    rate: float  # scheduled requests per second (open model, Poisson arrivals)
    long_share: float  # share of them that are long (/io?ms=long_ms)
    long_ms: int
    idle: int  # idle keep-alive connections held open
    before: float  # seconds of schedule before SIGTERM
    after: float  # and after it
    scheduled: int
    outcomes: dict[str, int]  # every outcome of OUTCOMES; they add up to `scheduled`
    short: dict[str, int]  # the same, for the short requests only
    long: dict[str, int]
    in_flight: dict[str, int]  # the outcomes of the requests sent before SIGTERM and not answered by then
    in_flight_ms: list[float]  # the latency (from its slot) of each of those that got an answer
    due_after: dict[str, int]  # the outcomes of the requests due after SIGTERM
    last_answer: float | None  # the last answer of any kind
    idle_closed: list[float | None]  # when the server closed each idle connection (None: still open at the end)
    timeline_start: float  # the first bucket of the timeline
    timeline: dict[str, list[int]]  # outcome -> how many ended in each BUCKET-second bucket
    max_late: float  # the latest a request was sent after its slot (the client keeping up)
    peak_connections: int
    service: Service | None = None  # None in records from before it was measured
    # Each request due before the signal that was lost: when it was due, when it went out (None: never) and when it
    # ended, in seconds from the signal, and how: whether the client sent it late, or after the signal
    lost_early: list[LostRequest] = Field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(self.outcomes[o] for o in LOST)

    @property
    def lost_after(self) -> int:
        """Lost among the requests due after SIGTERM (sent to a server that was stopping)."""
        return sum(self.due_after[o] for o in LOST)

    @property
    def lost_before(self) -> int:
        """Lost among the requests due before SIGTERM: what a graceful stop must not lose."""
        return self.lost - self.lost_after


@dataclass(slots=True)
class Request:
    kind: int  # index into KINDS
    slot: float  # perf_counter() when it is due
    sent: float
    end: float
    outcome: str
    reused: bool = False  # sent on a keep-alive connection that had answered before


@dataclass
class Conn:
    sock: socket.socket
    fd: int
    request: Request | None = None
    connecting: bool = False
    keep_idle: bool = False  # one of the idle keep-alive connections: never used for the schedule
    closed_at: float | None = None  # when the server closed it (idle connections)
    buf: bytearray = field(default_factory=lambda: bytearray(BUFFER))
    filled: int = 0
    answered: int = 0  # answers it carried


@dataclass
class StopClient:
    """Drive the schedule around SIGTERM at `stop_at` (the epoch) against `target`."""

    target: Target
    short: Plan
    long: Plan
    rate: float
    long_share: float
    stop_at: float
    before: float = 1.0
    after: float = 1.0
    drain: float = 13.0  # after the schedule, the longest to wait for the answers still owed
    idle: int = 4
    max_connections: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        self.until: float | None = None  # the epoch at which another thread ends the schedule early (`cut`)
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.pool: deque[Conn] = deque()  # connections with nothing in flight
        self.backlog: deque[Request] = deque()
        self.requests: list[Request] = []
        self.idle_conns: list[Conn] = []
        self.finishing = False  # the test is over: what the client closes now, the server did not
        self.peak = 0
        self.max_late = 0.0
        self.expected = (http1.Expected.of(self.short), http1.Expected.of(self.long))  # by Request.kind

    def cut(self, at: float) -> None:
        """End the schedule at `at` (the epoch) rather than `after` seconds past the signal; thread-safe: the loop
        reads it. The slots not yet due then are no part of the schedule."""
        self.until = at

    def plan_of(self, request: Request) -> Plan:
        return self.long if request.kind else self.short

    def schedule(self, stop: float) -> list[Request]:
        rng = random.Random(self.seed)
        slots, at = [], stop - self.before
        while True:
            at += rng.expovariate(self.rate)
            if at >= stop + self.after:
                return slots
            slots.append(Request(int(rng.random() < self.long_share), at, -1.0, -1.0, ""))

    # --- connections -------------------------------------------------------------------------------------------
    def open(self, now: float, request: Request | None) -> Conn | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((self.target.host, self.target.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            if request is not None:
                self.end(request, now, "refused" if code == errno.ECONNREFUSED else "reset")
            return None
        conn = Conn(sock, sock.fileno(), request, connecting=True)
        self.conns[conn.fd] = conn
        self.peak = max(self.peak, len(self.conns))
        self.ep.register(conn.fd, EPOLLIN | EPOLLOUT)
        return conn

    def close(self, conn: Conn, now: float) -> None:
        if self.conns.pop(conn.fd, None) is not None:
            self.ep.unregister(conn.fd)
            conn.sock.close()
        if conn.keep_idle and not self.finishing:
            conn.closed_at = now
        if conn in self.pool:
            self.pool.remove(conn)

    def fail(self, conn: Conn, now: float, outcome: str) -> None:
        """The connection is done for; its request, if it had one, ends with `outcome`. A request waiting for a
        connection gets a new one in its place."""
        if conn.request is not None:
            self.end(conn.request, now, outcome)
            conn.request = None
        self.close(conn, now)
        if self.backlog and not self.finishing and len(self.conns) < self.max_connections:
            self.open(now, self.backlog.popleft())

    def end(self, request: Request, now: float, outcome: str) -> None:
        request.end, request.outcome = now, outcome

    def send(self, conn: Conn, request: Request, now: float) -> None:
        conn.request, request.sent, request.reused = request, now, conn.answered > 0
        self.max_late = max(self.max_late, now - request.slot)
        try:
            conn.sock.send(self.plan_of(request).request)  # a few dozen bytes: they fit the empty socket buffer
        except (BrokenPipeError, ConnectionResetError):
            self.fail(conn, now, "reset")
        except OSError:
            self.fail(conn, now, "closed")

    def free(self, conn: Conn, now: float) -> None:
        if conn.keep_idle:
            return
        if self.backlog:
            self.send(conn, self.backlog.popleft(), now)
        else:
            self.pool.append(conn)

    def due(self, request: Request, now: float) -> None:
        if self.pool:
            self.send(self.pool.popleft(), request, now)
        elif len(self.conns) < self.max_connections:
            self.open(now, request)
        else:
            self.backlog.append(request)

    # --- answers -----------------------------------------------------------------------------------------------
    def answer(self, conn: Conn, expected: http1.Expected) -> tuple[int, bool, bool]:
        """(bytes used, correct, server closes) for a whole answer at the buffer's start; (0, ...) while partial."""
        try:
            response = http1.read(conn.buf, conn.filled)
        except http1.ProtocolError:
            return conn.filled, False, True  # no answer this client can delimit: an error, and the connection unusable
        if response is None:
            return 0, False, False
        return response.end, expected.verdict(response) is None, response.close

    def readable(self, conn: Conn, now: float) -> None:
        if conn.filled == len(conn.buf):
            conn.buf.extend(bytes(len(conn.buf)))
        try:
            n = conn.sock.recv_into(memoryview(conn.buf)[conn.filled :])
        except BlockingIOError:
            return
        except OSError:
            return self.fail(conn, now, "reset")
        if n == 0:
            return self.fail(conn, now, "closed")
        conn.filled += n
        if conn.request is None:
            return self.fail(conn, now, "closed")  # bytes nobody asked for: the connection is out of step
        used, correct, closing = self.answer(conn, self.expected[conn.request.kind])
        if not used:
            return
        request, conn.request = conn.request, None
        conn.answered += 1
        self.end(request, now, "ok" if correct else "error")
        conn.buf[: conn.filled - used] = conn.buf[used : conn.filled]
        conn.filled -= used
        if closing or conn.filled:
            return self.close(conn, now)
        self.free(conn, now)

    def writable(self, conn: Conn, now: float) -> None:
        conn.connecting = False
        self.ep.modify(conn.fd, EPOLLIN)
        code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not code and to_itself(conn.sock):  # core/loopback.py: the restarting server's port held by us
            code = errno.ECONNREFUSED
        if code:
            return self.fail(conn, now, "refused" if code == errno.ECONNREFUSED else "reset")
        if conn.request is not None:
            request, conn.request = conn.request, None
            self.send(conn, request, now)
        else:
            self.free(conn, now)

    # --- the loop ----------------------------------------------------------------------------------------------
    def warm_idle(self, deadline: float) -> None:
        """The idle keep-alive connections: each answers one request, then stays open, unused."""
        waiting = []
        for _ in range(self.idle):
            conn = self.open(time.perf_counter(), None)
            if conn is None:
                raise OSError(f"cannot connect to {self.target.host}:{self.target.port}")
            conn.keep_idle = True
            waiting.append(conn)
        warm = [Request(0, time.perf_counter(), -1.0, -1.0, "") for _ in waiting]
        for conn, request in zip(waiting, warm, strict=True):
            conn.request = request
        while any(not r.outcome for r in warm) and time.perf_counter() < deadline:
            self.turn(0.005)
        if any(r.outcome != "ok" for r in warm):
            raise OSError("the idle connections' first requests were not answered correctly")
        self.idle_conns = waiting

    def turn(self, timeout: float) -> None:
        events = self.ep.poll(timeout)
        now = time.perf_counter()
        for fd, mask in events:
            conn = self.conns.get(fd)
            if conn is None:
                continue
            if conn.connecting and mask & (EPOLLOUT | EPOLLERR | EPOLLHUP):
                self.writable(conn, now)
            elif mask & (EPOLLIN | EPOLLERR | EPOLLHUP):
                self.readable(conn, now)

    def run(self) -> StopLoad:
        wall_to_perf = time.perf_counter() - time.time()
        stop = self.stop_at + wall_to_perf
        self.warm_idle(stop - self.before)
        self.requests = self.schedule(stop)
        pending = deque(self.requests)
        end = stop + self.after
        while True:
            now = time.perf_counter()
            if self.until is not None and self.until + wall_to_perf < end:
                end, dropped = max(self.until + wall_to_perf, now), 0
                while pending and pending[-1].slot >= end:  # not yet due: the schedule's sorted tail
                    pending.pop()
                    dropped += 1
                del self.requests[len(self.requests) - dropped :]
            deadline = end + self.drain
            while pending and pending[0].slot <= now:
                self.due(pending.popleft(), now)
            owed = self.backlog or any(c.request is not None for c in self.conns.values())
            if (not pending and not owed) or now >= deadline:
                break
            wait = min(pending[0].slot - now if pending else 0.005, 0.005)
            self.turn(max(wait, 0.0))
        now = time.perf_counter()
        self.finishing = True
        for request in self.backlog:
            self.end(request, now, "never_sent")
        for conn in list(self.conns.values()):
            if conn.request is not None:
                self.end(conn.request, now, "never_sent" if conn.request.sent < 0 else "timeout")
            self.close(conn, now)
        self.ep.close()
        return self.result(stop, end)

    def result(self, stop: float, end: float) -> StopLoad:
        done = self.requests
        assert all(r.outcome in OUTCOMES for r in done), "a scheduled request without an outcome"

        def count(requests: list[Request]) -> dict[str, int]:
            counted = Counter(r.outcome for r in requests)
            return {o: counted[o] for o in OUTCOMES}

        in_flight = [r for r in done if 0 <= r.sent < stop and r.end >= stop]
        answered = [r for r in done if r.outcome in ("ok", "error")]
        first = -self.before
        buckets = int((max((r.end for r in done), default=stop) - stop - first) / BUCKET) + 1
        timeline = {o: [0] * buckets for o in OUTCOMES}
        for r in done:
            timeline[r.outcome][int((r.end - stop - first) / BUCKET)] += 1
        return StopLoad(
            rate=self.rate,
            long_share=self.long_share,
            long_ms=self.long.params.get("ms", 0),
            idle=self.idle,
            before=self.before,
            after=round(end - stop, 6),
            scheduled=len(done),
            outcomes=count(done),
            short=count([r for r in done if r.kind == 0]),
            long=count([r for r in done if r.kind == 1]),
            in_flight=count(in_flight),
            in_flight_ms=[round((r.end - r.slot) * 1000, 3) for r in in_flight if r.outcome in ("ok", "error")],
            due_after=count([r for r in done if r.slot >= stop]),
            lost_early=[
                LostRequest(
                    due=round(r.slot - stop, 6),
                    sent=round(r.sent - stop, 6) if r.sent >= 0 else None,
                    ended=round(r.end - stop, 6),
                    outcome=r.outcome,
                    reused=r.reused,
                )
                for r in done
                if r.slot < stop and r.outcome in LOST
            ],
            last_answer=round(max(r.end for r in answered) - stop, 6) if answered else None,
            idle_closed=[None if c.closed_at is None else round(c.closed_at - stop, 6) for c in self.idle_conns],
            timeline_start=first,
            timeline={o: v for o, v in timeline.items() if any(v)},
            max_late=round(self.max_late, 6),
            peak_connections=self.peak,
            service=service(sorted(r.end - stop for r in done if r.outcome == "ok"), self.before, end - stop),
        )


def service(ok: list[float], before: float, after: float) -> Service:
    """The gap in service from the correct answers' completion times `ok` (sorted, seconds from the signal) over a
    schedule from -`before` to `after`."""
    marks = [-before, *(t for t in ok if t <= after), after]
    gaps = [(b - a, a) for a, b in itertools.pairwise(marks)]
    longest, gap_from = max(gaps)
    rate = sum(t < 0 for t in ok) / before
    floor, start = rate * RECOVERY / 2, bisect.bisect_left(ok, 0.0)
    windows = max(int((after - RECOVERY) / BUCKET + 1e-9) + 1, 0)  # RECOVERY seconds each, BUCKET apart, from 0 on
    low = [
        i for i in range(windows)
        if bisect.bisect_left(ok, i * BUCKET + RECOVERY, start) - bisect.bisect_left(ok, i * BUCKET, start) < floor
    ]  # fmt: skip
    recovered = None if low and low[-1] == windows - 1 else low[-1] * BUCKET + RECOVERY if low else 0.0
    return Service(
        rate_before=round(rate, 1), longest_gap=round(longest, 6), gap_from=round(gap_from, 6),
        longest_gap_before=round(max((g for g, a in gaps if a + g <= 0), default=0.0), 6),
        recovered=None if recovered is None else round(recovered, 3),
    )  # fmt: skip


def capacity(target: Target, plan: Plan, seconds: float = 0.5, connections: int = 16) -> float:
    """Whole answers per second with `connections` keep-alive connections, each sending its next request at once
    (the closed model): the cell's capacity as this client sees it, for the schedule's rate. An answer is framed as
    every HTTP/1.1 client of the lab frames it (loadtests/http1.py); one whose head repeats the connection's last one
    byte for byte is framed by that one's length."""
    ep = select.epoll()
    conns: dict[int, tuple[socket.socket, bytearray]] = {}
    last: dict[int, http1.Response] = {}  # each connection's last length-framed answer
    for _ in range(connections):
        sock = socket.create_connection((target.host, target.port), timeout=2)
        refuse_itself(sock)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[sock.fileno()] = (sock, bytearray())
        ep.register(sock.fileno(), EPOLLIN)
        sock.send(plan.request)
    answers, started = 0, time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            for fd, _ in ep.poll(0.01):
                sock, buf = conns[fd]
                data = sock.recv(BUFFER)
                if not data:
                    raise OSError("the server closed a connection while its capacity was measured")
                buf += data
                while buf:
                    known = last.get(fd)
                    if known is not None and buf.startswith(known.head):
                        if len(buf) < known.end:
                            break
                        end = known.end
                    else:
                        try:
                            response = http1.read(buf)
                        except http1.ProtocolError as exc:
                            raise OSError(f"an answer this client cannot delimit: {exc}") from None
                        if response is None:
                            break
                        end = response.end
                        if response.framing == "length":
                            last[fd] = response
                    del buf[:end]
                    answers += 1
                    sock.send(plan.request)
    finally:
        for sock, _ in conns.values():
            sock.close()
        ep.close()
    return answers / (time.perf_counter() - started)
