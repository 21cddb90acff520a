"""The records of the Locust master's lab API (loadtests/master.py serves them, loadtests/remote.py reads them): the
wire format alone, with no Locust import, so that the runner's process never loads Locust (which patches the
standard library with gevent's on import)."""

from __future__ import annotations

from pydantic import ConfigDict

from core.model import Record
from loadtests.load import LoadResult, RefereeResult


class Info(Record):
    cpus: list[int]


class Seq(Record):
    seq: int


class Outcome(Record):
    """The latest run's result, or why there is none; `seq` counts the runs the master has finished."""

    seq: int
    result: LoadResult | None
    error: str | None


class RefereeReply(Record):
    result: RefereeResult | None  # None where wrk is not installed or cannot replay the scenario
    error: str | None


class Quitting(Record):
    quitting: bool


class WorkerCount(Record):
    """Locust's own GET /worker-count."""

    model_config = ConfigDict(extra="ignore")
    worker_count: int


class SwarmReply(Record):
    """Locust's own POST /swarm."""

    model_config = ConfigDict(extra="ignore")
    success: bool
    message: str = ""
