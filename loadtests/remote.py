"""Loads from the compose lab's long-lived Locust master and its worker containers, run by run.

Each run goes through Locust's own POST /swarm with the lab's options as form fields; the master stops it after
--lab-duration, merges its workers' histograms and serves the result at /lab/result. The web UI on the master's
address shows every run live. The referee (wrk) runs in the master's container, on the load CPUs.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import urllib.request
from typing import TypeVar

from pydantic import BaseModel

from loadtests.api import Info, Outcome, RefereeReply, Seq, SwarmReply, WorkerCount
from loadtests.load import Load, LoadError, LoadResult, LoadSideLostError, RefereeResult

R = TypeVar("R", bound=BaseModel)

CONNECT_TIMEOUT = 60.0  # at the start, for the workers to join
REJOIN_TIMEOUT = 10.0  # later, for a worker that is missing: then the load side counts as lost


def get(url: str, kind: type[R], timeout: float = 10) -> R:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return kind.model_validate_json(response.read())


def post(url: str, data: bytes, kind: type[R], content_type: str, timeout: float = 10) -> R:
    request = urllib.request.Request(url, data=data, headers={"content-type": content_type})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return kind.model_validate_json(response.read())


class MasterLocust:
    """The LoadBackend of the compose lab: the master at `url` with `workers` workers on its (the load) CPUs."""

    def __init__(self, url: str, workers: int = 1, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.workers = workers
        self.connect_timeout = connect_timeout
        try:
            self.cpus: tuple[int, ...] = tuple(get(f"{self.url}/lab/info", Info).cpus)
        except OSError as exc:
            raise LoadSideLostError(f"the Locust master at {self.url} did not answer: {exc}") from None
        self.joined = False

    def wait_for_workers(self) -> None:
        """All workers must be there: up to CONNECT_TIMEOUT at first, then REJOIN_TIMEOUT (a lost worker)."""
        timeout = REJOIN_TIMEOUT if self.joined else self.connect_timeout
        deadline = time.monotonic() + timeout
        count = 0
        while time.monotonic() < deadline:
            try:
                count = get(f"{self.url}/worker-count", WorkerCount).worker_count
            except OSError as exc:
                raise LoadSideLostError(f"the Locust master at {self.url} did not answer: {exc}") from None
            if count >= self.workers:
                self.joined = True
                return
            time.sleep(0.25)
        raise LoadSideLostError(
            f"the Locust master at {self.url} has {count} of {self.workers} workers after {timeout:g} s "
            "(a locust-worker was lost)"
        )

    def check(self) -> None:
        self.wait_for_workers()

    def run(self, load: Load) -> LoadResult:
        self.wait_for_workers()
        try:
            before = get(f"{self.url}/lab/seq", Seq).seq
            form = urllib.parse.urlencode(load.form()).encode()
            reply = post(f"{self.url}/swarm", form, SwarmReply, "application/x-www-form-urlencoded")
        except OSError as exc:
            raise LoadSideLostError(f"the Locust master at {self.url} did not answer: {exc}") from None
        if not reply.success:
            raise LoadError(f"Locust master refused the run: {reply.message}")
        deadline = time.monotonic() + load.timeout
        time.sleep(load.warmup + load.duration)  # no polling while the window is open: the load CPUs are measuring
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                if get(f"{self.url}/lab/seq", Seq).seq <= before:
                    continue
                latest = get(f"{self.url}/lab/result", Outcome)
            except OSError as exc:
                raise LoadSideLostError(f"the Locust master at {self.url} stopped answering: {exc}") from None
            if latest.seq > before:
                if latest.result is None:
                    raise LoadError(f"the Locust master gave no result: {latest.error}")
                return latest.result
        raise LoadError(f"no result from Locust master {self.url} within {load.timeout:g} s")

    def referee(self, load: Load) -> RefereeResult | None:
        try:
            data = load.model_dump_json().encode()
            reply = post(f"{self.url}/lab/referee", data, RefereeReply, "application/json", timeout=load.duration + 60)
        except OSError as exc:
            raise LoadSideLostError(f"the Locust master at {self.url} did not run the referee: {exc}") from None
        if reply.error is not None:
            raise LoadError(f"referee failed in the master's container: {reply.error}")
        return reply.result

    def close(self) -> None:
        """Make the master quit (its workers then quit too): the end of a compose run."""
        with contextlib.suppress(OSError):
            urllib.request.urlopen(urllib.request.Request(f"{self.url}/lab/quit", data=b""), timeout=10).close()
