"""The records of the target agent's HTTP API (servers/agent.py serves them, servers/remote.py sends and reads them),
each as JSON: the wire format alone, with the bounds on what one caller may ask for."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.model import Record
from servers.own_app import OwnApp
from servers.target import StartupReport
from servers.variants import Environment, Variant

LEASE_HEADER = "x-lab-lease"  # names the caller: one run drives the agent at a time
LEASE_SECONDS = 60.0  # a caller's hold on the agent lapses this long after its last request
MAX_STOP = 60.0  # seconds a stop may wait for its server before SIGKILL
MAX_WINDOW = 2 * 3600.0 + 60  # seconds: a sampled window (warm-up and duration, each at most an hour)
ServerPort = Annotated[int, Field(ge=1024, le=65535)]  # the servers' ports: never a privileged one
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Health(Record):
    ok: bool
    cpus: list[int]
    running: list[str]  # the running cells' keys (two at once for an A/B pair)
    matrix: str  # the digest of the agent's matrix: the runner's must be the same
    serve_host: str = "127.0.0.1"  # the address its servers listen on: the run's target host
    leased: bool = False  # another caller holds the agent (one run at a time)
    now: float = 0.0  # the agent's wall clock (time.time()) when it answered: windows are timed on both hosts


class Start(Record):
    cell: Annotated[str, Field(max_length=200)]  # a cell key of the agent's matrix
    port: ServerPort
    matrix: str  # the digest of the runner's matrix
    graceful: str = "lab"  # its graceful timeout: the lab's, or the server's own default


class Terminate(Record):
    """SIGTERM the server on `port` at `at` (the epoch, which both sides share), SIGKILL after `kill_after` s."""

    port: int
    at: float
    kill_after: float


class RestartAsk(Record):
    """Restart the server on `port` at `at` (the epoch) with its server's restart signal (the agent's matrix names
    it), waiting up to `timeout` seconds for its new workers."""

    port: int
    at: float
    timeout: Annotated[float, Field(ge=0, le=MAX_STOP, allow_inf_nan=False)]


class Prepare(Record):
    variants: list[Variant]
    own: OwnApp | None = None


class Prepared(Record):
    environments: list[Environment]


class Started(Record):
    report: StartupReport
    pid: int


class Status(Record):
    running: str | None
    alive: bool
    exit_code: int | None


class Stop(Record):
    timeout: Annotated[float, Field(ge=0, le=MAX_STOP, allow_inf_nan=False)] = 20.0
    port: ServerPort | None = None  # the server on this port; None: every running one


class Stopped(Record):
    exit_code: int | None
    log_tail: str


class LogTail(Record):
    log_tail: str


class Window(Record):
    start: Seconds
    end: Seconds
    port: ServerPort

    @model_validator(mode="after")
    def bounded(self) -> Window:
        if not 0 <= self.end - self.start <= MAX_WINDOW:
            raise ValueError(f"a window runs forward, for at most {MAX_WINDOW:g} s")
        return self


class Port(Record):
    """Which running server (each has a port of its own)."""

    port: ServerPort


class Empty(Record):
    pass


class Refusal(Record):
    """What the agent answers instead: 400 bad input (the matrix's words), 401 no or a wrong secret, 403 what this
    agent does not do, 404 no such request, 409 another caller holds the agent, 413 a body too large, 500 the server
    failed (with its log's tail)."""

    error: str
    log_tail: str = ""


class SpeedAsk(Record):
    """The speed of one server CPU: the speed index's sample (a fresh process) or a short probe."""

    cpu: Annotated[int, Field(ge=0, le=4095)]
    kind: Literal["index", "probe"]


class Speed(Record):
    ops: float  # inserts per second (core/speed.py)


class SpeedSamples(Record):
    """The speedometer's samples since its start: CPU (as text) -> [time, inserts per CPU-second] pairs."""

    samples: dict[str, list[tuple[float, float]]]
