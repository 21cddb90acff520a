"""The records of the target agent's HTTP API (servers/agent.py serves them, servers/remote.py sends and reads them),
each as JSON: the wire format alone."""

from __future__ import annotations

from core.model import Record
from servers.own_app import OwnApp
from servers.target import StartupReport
from servers.variants import Environment, Variant


class Health(Record):
    ok: bool
    cpus: list[int]
    running: list[str]  # the running cells' keys (two at once for an A/B pair)
    matrix: str  # the digest of the agent's matrix: the runner's must be the same


class Start(Record):
    cell: str  # a cell key of the agent's matrix
    port: int
    matrix: str  # the digest of the runner's matrix
    graceful: str = "lab"  # its graceful timeout: the lab's, or the server's own default


class Terminate(Record):
    """SIGTERM the server on `port` at `at` (the epoch, which both sides share), SIGKILL after `kill_after` s."""

    port: int
    at: float
    kill_after: float


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
    timeout: float = 20.0
    port: int | None = None  # the server on this port; None: every running one


class Stopped(Record):
    exit_code: int | None
    log_tail: str


class LogTail(Record):
    log_tail: str


class Window(Record):
    start: float
    end: float
    port: int


class Port(Record):
    """Which running server (each has a port of its own)."""

    port: int


class Empty(Record):
    pass


class Refusal(Record):
    """What the agent answers instead: 400 bad input (the matrix's words), 404 no such request, 500 the server
    failed (with its log's tail)."""

    error: str
    log_tail: str = ""
