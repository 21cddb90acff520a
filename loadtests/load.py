"""The load side's interface: one bounded load (`Load`), its typed result (`LoadResult`), and the backend that runs it.

Two backends sit side by side: loadtests/local.py runs Locust as a child process on this machine's load CPUs;
loadtests/remote.py drives the compose lab's long-lived Locust master and its workers. The runner and calibration
see only `LoadBackend`.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import AliasChoices, BeforeValidator, Field

from core.errors import ProcessFailedError, ServiceLostError, UsageError
from core.host import MAX_GROUP
from core.model import Record
from loadtests import scenarios
from servers.matrix import HttpVersion, Scenario

Client = Literal["lean", "stock"]
Arrivals = Literal["poisson", "uniform"]  # the open model's schedules
PairMode = Literal["together", "slices"]  # how a group load (a pair, or more servers) shares itself between them
USER_CLASSES: dict[str, str] = {"lean": "LeanUser", "stock": "StockUser"}  # each Client's Locust user class
STARTUP_ALLOWANCE = 60.0  # seconds for Locust to start, spawn and stop, on top of the measured duration
MAX_DURATION = 3600.0
MAX_USERS = 10_000
MAX_RATE = 1_000_000.0
MAX_CONNECTIONS = 65_000
SHORTFALL_AT = 0.95  # open model: answered fewer than this share of the window's slots = the offer was not served
MIN_SLICE, MAX_SLICE = 0.01, 5.0  # seconds: a group load's buckets (together) or slices
# h2: the runs' streams per connection. Measured on granian-uvloop-h2c-w1-raw with 64 connections (docs/http2.md):
# 1, 4 and 16 streams gave 23.9k, 41.3k and 39.6k answers/s with p99 3.8, 13.3 and 45.9 ms. 4 reaches the server's
# throughput; more only queues (and every server's limit, 100 concurrent streams for hypercorn, stays far off).
DEFAULT_STREAMS = 4
MAX_STREAMS = 1000  # h2: streams per connection; servers advertise 100-1000 (SETTINGS_MAX_CONCURRENT_STREAMS)


class LoadError(ProcessFailedError):
    """Locust or wrk failed, hung, or gave no result (its log's tail in `log_tail`)."""


class LoadSideLostError(ServiceLostError):
    """The load side itself is gone (the Locust master does not answer, or workers are missing): no later load can
    run."""


def one_of(kind: Any, refusal: str) -> BeforeValidator:
    """A Literal field checked where the load is made: a value outside it is a UsageError in one line, `refusal`
    with the value in it ({!r})."""

    def check(value: Any) -> Any:
        if value not in get_args(kind):
            raise UsageError(refusal.format(value))
        return value

    return BeforeValidator(check)


class GroupSide(Record):
    """A further server of a group load, and the protocol spoken to it."""

    target: str
    http: Annotated[HttpVersion, one_of(HttpVersion, "http {!r}: give h1 or h2")] = "h1"


def group_of(value: Any) -> Any:
    """A group's further servers: as their JSON (as Locust's options carry them), or each as its URL alone (over
    HTTP/1.1), or as records."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if isinstance(value, list | tuple):
        return [{"target": side} if isinstance(side, str) else side for side in value]
    return value


def scenario_of(value: Any) -> Any:
    """A scenario given by name (looked up in this process's matrix) or as its JSON (as a load carries it)."""
    if isinstance(value, str):
        if value.lstrip().startswith("{"):
            return Scenario.model_validate_json(value)
        from servers.matrix import load

        return load().scenario(value)
    return value


class Load(Record):
    """One bounded load, checked where it is made: nothing starts with bad input. Locust's own options carry the
    target, the users and the client (its user class); every other field is a `--lab-*` option of the locustfile,
    made from this model (`lab_options`, `add_arguments`, `from_options`)."""

    target: str
    scenario: Annotated[Scenario, BeforeValidator(scenario_of)] = Field(
        "plaintext", validate_default=True, description="scenario: a name or its JSON"
    )
    params: dict[str, str] = Field(default_factory=dict, description="scenario parameters: key=value,key=value")
    users: int = 64
    duration: Annotated[float, Field(description="seconds to measure, then stop (and quit)")] = 10.0
    rate: Annotated[float, Field(description="open model: requests/s offered in all; 0 = closed model")] = 0.0
    client: Annotated[Client, one_of(Client, f"unknown client {{!r}}; valid: {', '.join(USER_CLASSES)}")] = "lean"
    warmup: Annotated[float, Field(description="unrecorded seconds before the window opens")] = 0.0
    arrivals: Annotated[
        Arrivals,
        Field(description="open model: poisson or uniform"),
        one_of(Arrivals, "arrivals {!r}: give poisson or uniform"),
    ] = "poisson"
    max_connections: Annotated[int, Field(description="open model: connections at most, all processes")] = 1024
    # A group load (an A/B pair: lab/measure/pair.py, or more servers): `users` connections to each of its servers on
    # the same CPUs, each spoken to in its own protocol, all loaded at once (together) or in turn (slices); the
    # correct answers of each counted per bucket or slice.
    group: Annotated[
        list[GroupSide],
        BeforeValidator(group_of),
        Field(default_factory=list, description='group load: the further servers, [{"target": URL, "http": "h2"}]'),
    ]
    pair_mode: Annotated[
        PairMode,
        Field(description="group load: together or slices"),
        one_of(PairMode, "pair mode {!r}: give together or slices"),
    ] = "together"
    slice_seconds: Annotated[float, Field(description="group load: seconds per bucket (together) or slice")] = 0.1
    settle_seconds: Annotated[float, Field(description="group load, slices: uncounted start of each slice")] = 0.02
    http: Annotated[
        HttpVersion,
        Field(description="h1 (HTTP/1.1) or h2 (HTTP/2 cleartext, prior knowledge)"),
        one_of(HttpVersion, "http {!r}: give h1 or h2"),
    ] = "h1"
    streams: Annotated[int, Field(description="h2: requests in flight per connection (1 over HTTP/1.1)")] = 1
    # The one address beyond loopback the user named for this run (--target-host); every other is refused.
    named_host: Annotated[str, Field(description="the target host the user named; empty: loopback only")] = ""

    def model_post_init(self, context: Any) -> None:
        plan = self.plan()
        if plan.websocket and self.client == "stock":
            raise UsageError("the stock client (FastHttpUser) has no websocket support; use --client lean")
        if not 1 <= self.users <= MAX_USERS:
            raise UsageError(f"users {self.users} must be in 1-{MAX_USERS}")
        if not (math.isfinite(self.duration) and 0 < self.duration <= MAX_DURATION):
            raise UsageError(f"duration {self.duration:g} must be in (0, {MAX_DURATION:g}] seconds")
        if not (math.isfinite(self.rate) and 0 <= self.rate <= MAX_RATE):
            raise UsageError(f"rate {self.rate:g} must be in 0-{MAX_RATE:g} requests/s (0 = closed model)")
        if self.rate and self.client == "stock":
            raise UsageError(
                "the stock client (FastHttpUser) runs the closed model only; use --client lean with --rate"
            )
        if not (math.isfinite(self.warmup) and 0 <= self.warmup <= MAX_DURATION):
            raise UsageError(f"warm-up {self.warmup:g} must be in [0, {MAX_DURATION:g}] seconds")
        if self.group:
            self.check_group(plan)
        self.check_http(plan)
        if not self.users <= self.max_connections <= MAX_CONNECTIONS:
            raise UsageError(
                f"max_connections {self.max_connections} must be in {self.users}-{MAX_CONNECTIONS} (at least the users)"
            )

    def check_group(self, plan: scenarios.Plan) -> None:
        for side in self.group:
            scenarios.Target.parse(side.target, self.named_host)
        if len(self.sides) > MAX_GROUP:
            raise UsageError(f"a group load of {len(self.sides)} servers: give at most {MAX_GROUP}")
        if self.connections > MAX_USERS:
            raise UsageError(f"users {self.users} x {len(self.sides)} servers must be at most {MAX_USERS} connections")
        if self.rate or plan.websocket or self.client != "lean":
            raise UsageError("a paired load runs the lean client's closed model over HTTP: no rate, ws or stock client")
        if not (math.isfinite(self.slice_seconds) and MIN_SLICE <= self.slice_seconds <= MAX_SLICE):
            raise UsageError(f"slice {self.slice_seconds:g} s must be in [{MIN_SLICE:g}, {MAX_SLICE:g}] seconds")
        if not (math.isfinite(self.settle_seconds) and 0 <= self.settle_seconds < self.slice_seconds):
            raise UsageError(f"settle {self.settle_seconds:g} s must be in [0, {self.slice_seconds:g}) (the slice)")

    def check_http(self, plan: scenarios.Plan) -> None:
        if not 1 <= self.streams <= MAX_STREAMS:
            raise UsageError(f"streams {self.streams} must be in 1-{MAX_STREAMS}")
        h2 = any(side.http == "h2" for side in self.sides)
        if not h2 and self.streams != 1:
            raise UsageError("streams above 1 need http h2: HTTP/1.1 has one request in flight per connection")
        if h2 and (plan.websocket or self.client != "lean"):
            raise UsageError("an h2 load runs the lean client over HTTP: no ws or stock client")

    @property
    def requests_in_flight(self) -> int:
        """The closed model's concurrency: each connection's streams."""
        return self.users * self.streams

    @property
    def sides(self) -> list[GroupSide]:
        """Every server of the load, its `target` first (a group's further ones after it)."""
        return [GroupSide(target=self.target, http=self.http), *self.group]

    @property
    def grouped(self) -> bool:
        return bool(self.group)

    @property
    def connections(self) -> int:
        """Locust's users: one connection each, `users` to each server of a group."""
        return self.users * len(self.sides)

    def plan(self, target: str | None = None) -> scenarios.Plan:
        """The bytes to send and what must come back (to `target`, one of the group's servers; its own Host)."""
        where = scenarios.Target.parse(target or self.target, self.named_host)
        return scenarios.plan(self.scenario, where, self.params)

    def streams_of(self, side: GroupSide) -> int:
        """Requests in flight per connection to one of the load's servers."""
        return self.streams if side.http == "h2" else 1

    @property
    def timeout(self) -> float:
        return self.warmup + self.duration + STARTUP_ALLOWANCE

    # --- as Locust's options -----------------------------------------------------------------------------------
    def lab_options(self) -> dict[str, str]:
        """The `--lab-*` options (by their argparse names), as text."""
        return {f"lab_{name}": encode(getattr(self, name)) for name in LAB_FIELDS}

    def command_line(self) -> list[str]:
        """Locust's command-line options for this load (the user class last)."""
        argv = ["--host", self.target, "-u", str(self.connections), "-r", str(self.spawn_rate)]
        for option, value in self.lab_options().items():
            argv += ["--" + option.replace("_", "-"), value]
        return [*argv, USER_CLASSES[self.client]]

    def form(self) -> dict[str, str | int]:
        """The form fields of Locust's POST /swarm for this load (a long-lived master's way of starting one)."""
        return {
            "user_count": self.connections, "spawn_rate": self.spawn_rate, "host": self.target,
            "user_classes": USER_CLASSES[self.client], **self.lab_options(),
        }  # fmt: skip

    @property
    def spawn_rate(self) -> int:
        return max(self.connections * 10, 100)  # every user at once: the window opens when all run

    @classmethod
    def add_arguments(cls, group: Any) -> None:
        """The `--lab-*` options on Locust's parser (its defaults are this model's)."""
        for name in LAB_FIELDS:
            info = cls.model_fields[name]
            kind = info.annotation if info.annotation in (int, float) else str
            default = info.get_default(call_default_factory=True)
            group.add_argument(
                "--lab-" + name.replace("_", "-"), type=kind, default=encode(default) if kind is str else default,
                help=info.description,
            )  # fmt: skip

    @classmethod
    def from_options(cls, options: Any, host: str, users: int, client: Client) -> Load:
        """The load a Locust process was started (or swarmed) with."""
        fields = {name: getattr(options, f"lab_{name}") for name in LAB_FIELDS}
        fields["params"] = scenarios.parse_overrides(fields["params"])
        servers = 1 + len(group_of(fields["group"]))  # Locust runs a user per connection, to each server of a group
        users = max(users // servers, 1)
        return cls(target=host, users=users, client=client, **fields)


def encode(value: Any) -> str:
    if isinstance(value, Scenario):
        return value.model_dump_json()
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return json.dumps([item.model_dump() for item in value])
    return str(value)


LOCUST_OWN = ("target", "users", "client")  # Locust's --host, -u and user class carry these
LAB_FIELDS = tuple(name for name in Load.model_fields if name not in LOCUST_OWN)


class Window(Record):
    start: float
    end: float
    seconds: float


class Latency(Record):
    count: int
    mean_us: float | None = None
    min_us: int | None = None
    max_us: int | None = None
    percentiles_us: dict[str, int]
    curve_us: list[tuple[float, int]]
    hdr: str


class LoadGenerator(Record):
    """The load side's own figures for the window: each worker's share of a core, each load CPU's busy share."""

    cpus: list[int]
    processes: int
    client: str
    cpu_seconds: float  # the worker processes' CPU, together
    worker_utilization: list[float]  # each worker's CPU seconds per second of the window (1.0 = a whole core)
    cpu_busy: dict[str, float]  # each load CPU: share of the window busy with anything (the master, neighbours too)
    cpu_steal: dict[str, float]  # each load CPU: share of the window the hypervisor gave to someone else
    cpu_irq: dict[str, float]  # each load CPU: share of the window in interrupts (the network stack)
    master_utilization: float | None  # the Locust master's own CPU, when a master ran beside the workers

    @property
    def busiest_cpu(self) -> float:
        return max(self.cpu_busy.values(), default=0.0)

    @property
    def busiest_worker(self) -> float:
        return max(self.worker_utilization, default=0.0)


class SideResult(Record):
    """One server of a group load: its answers, errors and latency, and its correct answers per bucket."""

    target: str
    http: HttpVersion = "h1"  # the protocol spoken to it (not in bundles before group loads)
    requests: int
    ok: int
    errors: dict[str, int]
    latency: Latency
    buckets: list[int]  # correct answers per bucket (together) or counted part of its slices (slices; 0 elsewhere)


class GroupResult(Record):
    """A group load's servers over the same window, bucket by bucket, in the load's order (its target first). Bucket
    k spans [k, k + 1) x bucket_seconds of the epoch (every worker process counts on the same clock); `first` is the
    window's first whole bucket. Together: every server is loaded in every bucket. Slices: server i is loaded in the
    buckets numbered i modulo the number of servers (a pair's A in even buckets, B in odd ones), and each slice's first
    settle_seconds are not counted (the previous server's last answers drain then)."""

    mode: PairMode
    bucket_seconds: float
    settle_seconds: float
    first: int
    sides: list[SideResult]

    @property
    def a(self) -> SideResult:
        """A pair's A: the load's own target."""
        return self.sides[0]

    @property
    def b(self) -> SideResult:
        """A pair's B: its second server."""
        return self.sides[1]

    def counted_seconds(self) -> float:
        """Seconds of one bucket in which its answers were counted."""
        return self.bucket_seconds - (self.settle_seconds if self.mode == "slices" else 0.0)


class PairResult(Record):
    """A paired load's two servers as bundles before group loads wrote them, A and B by name (read, never made by
    the client any more): the same figures as a GroupResult of two sides."""

    mode: PairMode
    bucket_seconds: float
    settle_seconds: float
    first: int
    a: SideResult
    b: SideResult

    @property
    def sides(self) -> list[SideResult]:
        return [self.a, self.b]

    def counted_seconds(self) -> float:
        """Seconds of one bucket in which its answers were counted."""
        return self.bucket_seconds - (self.settle_seconds if self.mode == "slices" else 0.0)


class LoadResult(Record):
    """What one load run measured, merged over every worker process: made by the locustfile, read by the runner.
    For a group load its figures are every server's together, and `group` has each one's."""

    scenario: str
    params: dict[str, int]
    client: str
    model: Literal["open", "closed"]
    users: int
    http: HttpVersion = "h1"  # the protocol spoken (not in bundles before HTTP/2 was added)
    streams: int = 1  # h2: requests in flight per connection
    offered_rps: float | None
    arrivals: Arrivals | None  # the open model's schedule
    rate_shortfall: bool | None  # open model: fewer correct answers than SHORTFALL_AT of the slots due
    window: Window
    requests: int
    ok: int
    errors: dict[str, int]
    rps: float
    per_second: list[int]  # correct answers in each whole second of the window, all processes together
    per_quarter: list[int] = Field(
        default_factory=list
    )  # the same per quarter-second (not in bundles of schema 2 before it was added)
    latency: Latency  # from the send (closed model) or from the request's slot (open model)
    send_lateness: Latency | None  # open model: how long after its slot each request went out
    scheduled: int  # open model: slots due inside the window
    owed: int  # open model: slots due in the window but not answered by its end (waiting or in flight)
    peak_connections: int  # the most connections open at once in the window (past the users' in the open model)
    processes: int
    per_process_ok: list[int]
    load_generator: LoadGenerator
    # a group load's servers, each apart (bundles before group loads have a pair's, as a PairResult, under "pair")
    group: GroupResult | PairResult | None = Field(None, validation_alias=AliasChoices("group", "pair"))

    @property
    def pair(self) -> GroupResult | PairResult | None:
        """A paired load's two servers (an A/B pair round), each apart; None for any other load."""
        return self.group if self.group is not None and len(self.group.sides) == 2 else None


H2LOAD_LIMITS = "h2load checks status codes only (no body or header check) and runs the closed model only"


class RefereeResult(Record):
    """wrk (or h2load, over h2c) on the same target, connections and load CPUs: the server's capacity without
    Locust."""

    rps: float
    non_2xx: int
    socket_errors: int
    threads: int
    seconds: float
    cpu_utilization: float  # wrk's CPU seconds per second per thread (1.0 = its threads' cores all busy)
    cpu_busy: dict[str, float]  # each load CPU: share of wrk's run busy with anything
    argv: list[str]
    tool: Literal["wrk", "h2load"] = "wrk"  # wrk over HTTP/1.1, h2load over h2c
    streams: int = 1  # h2load's -m: requests in flight per connection

    @property
    def saturated(self) -> bool:
        """wrk itself ran out of CPU: its figure is then its own ceiling, a floor for the server's."""
        return self.cpu_utilization >= 0.9 or max(self.cpu_busy.values(), default=0.0) >= 0.9


class LoadBackend(Protocol):
    """Runs loads from its load CPUs with `workers` Locust worker processes."""

    cpus: tuple[int, ...]
    workers: int

    def run(self, load: Load) -> LoadResult:
        """Run the load to its end (it stops by itself) and return the merged result; LoadError on failure."""
        ...

    def referee(self, load: Load) -> RefereeResult | None:
        """wrk on the same load CPUs, target and connections; None where wrk is not installed."""
        ...

    def check(self) -> None:
        """The load side is whole (its master answers, every worker is there); LoadSideLostError if not."""
        ...

    def close(self) -> None:
        """The run is over: end what this backend started (for the master: the master and its workers)."""
        ...
