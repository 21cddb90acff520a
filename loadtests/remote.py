"""Loads from the compose lab's long-lived Locust master and its worker containers, run by run.

Each run goes through Locust's own POST /swarm with the lab's options as form fields; the master stops it after
--lab-duration, merges its workers' histograms and serves the result at /lab/result. The web UI on the master's
address shows every run live. The referee (wrk) runs in the master's container, on the load CPUs.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from dataclasses import asdict
from typing import Any

from loadtests.load import USER_CLASSES, Load, LoadError, LoadResult, LoadSideLostError, RefereeResult

CONNECT_TIMEOUT = 60.0  # at the start, for the workers to join
REJOIN_TIMEOUT = 10.0  # later, for a worker that is missing: then the load side counts as lost


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _post(url: str, body: dict[str, Any], timeout: float = 10, form: bool = False) -> Any:
    """POST a JSON body, or (form=True) form fields as Locust's /swarm takes them."""
    if form:
        data, kind = urllib.parse.urlencode(body).encode(), "application/x-www-form-urlencoded"
    else:
        data, kind = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, headers={"content-type": kind})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class MasterLocust:
    """The LoadBackend of the compose lab: the master at `url` with `workers` workers on its (the load) CPUs."""

    def __init__(self, url: str, workers: int = 1, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.workers = workers
        self.connect_timeout = connect_timeout
        try:
            self.cpus: tuple[int, ...] = tuple(_get(f"{self.url}/lab/info")["cpus"])
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
                count = _get(f"{self.url}/worker-count")["worker_count"]
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
        form = {
            "user_count": load.users,
            "spawn_rate": max(load.users * 10, 100),
            "host": load.target,
            "lab_scenario": load.scenario,
            "lab_params": ",".join(f"{k}={v}" for k, v in load.params.items()),
            "lab_rate": load.rate,
            "lab_arrivals": load.arrivals,
            "lab_max_connections": load.max_connections,
            "lab_warmup": load.warmup,
            "lab_duration": load.duration,
            "lab_out": "",
            "user_classes": USER_CLASSES[load.client],
        }
        try:
            before = _get(f"{self.url}/lab/seq")["seq"]
            reply = _post(f"{self.url}/swarm", form, form=True)
        except OSError as exc:
            raise LoadSideLostError(f"the Locust master at {self.url} did not answer: {exc}") from None
        if not reply.get("success"):
            raise LoadError(f"Locust master refused the run: {reply.get('message')}")
        deadline = time.monotonic() + load.timeout
        time.sleep(load.warmup + load.duration)  # no polling while the window is open: the load CPUs are measuring
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                if _get(f"{self.url}/lab/seq")["seq"] <= before:
                    continue
                latest = _get(f"{self.url}/lab/result")
            except OSError as exc:
                raise LoadSideLostError(f"the Locust master at {self.url} stopped answering: {exc}") from None
            if latest["seq"] > before:
                if latest.get("error"):
                    raise LoadError(f"the Locust master gave no result: {latest['error']}")
                return LoadResult.model_validate_json(json.dumps(latest["result"]))
        raise LoadError(f"no result from Locust master {self.url} within {load.timeout:g} s")

    def referee(self, load: Load) -> RefereeResult | None:
        fields = {k: v for k, v in asdict(load).items() if k in ("target", "scenario", "params", "users", "duration")}
        try:
            reply = _post(f"{self.url}/lab/referee", fields, timeout=load.duration + 60)
        except OSError as exc:
            raise LoadSideLostError(f"the Locust master at {self.url} did not run the referee: {exc}") from None
        if "error" in reply:
            raise LoadError(f"referee failed in the master's container: {reply['error']}")
        return RefereeResult.model_validate_json(json.dumps(reply["result"])) if reply["result"] else None

    def close(self) -> None:
        """Make the master quit (its workers then quit too): the end of a compose run."""
        with contextlib.suppress(OSError):
            urllib.request.urlopen(urllib.request.Request(f"{self.url}/lab/quit", data=b""), timeout=10).close()
