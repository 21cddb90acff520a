"""Drive a long-lived Locust master (the compose lab's, with its web UI and worker containers) run by run.

Each run goes through Locust's own POST /swarm with the lab's options as form fields; the master stops it after
--lab-duration, merges its workers' histograms and serves the result at /lab/result. The web UI on the master's
address shows every run live.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtests.run import Load, LoadError


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class RemoteLocust:
    def __init__(self, master_url: str, workers: int = 1, connect_timeout: float = 60) -> None:
        self.url = master_url.rstrip("/")
        self.workers = workers
        self.connect_timeout = connect_timeout

    def wait_for_workers(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        count = 0
        while time.monotonic() < deadline:
            try:
                count = _get(f"{self.url}/worker-count")["worker_count"]
                if count >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise LoadError(
            f"Locust master {self.url} has {count} of {self.workers} workers after {self.connect_timeout:g} s"
        )

    def __call__(self, load: Load, workdir: Path | None = None) -> dict[str, Any]:
        """Run one load through the master; same result as loadtests.run.run gives locally."""
        if load.client != "lean":
            raise LoadError("the compose lab's Locust runs the lab client (LeanUser) only")
        self.wait_for_workers()
        try:
            before = _get(f"{self.url}/lab/result")["seq"]
            form = {
                "user_count": load.users,
                "spawn_rate": max(load.users * 10, 100),
                "host": load.target,
                "lab_scenario": load.scenario,
                "lab_params": ",".join(f"{k}={v}" for k, v in load.params.items()),
                "lab_rate": load.rate,
                "lab_duration": load.duration,
                "lab_out": "",
            }
            request = urllib.request.Request(f"{self.url}/swarm", data=urllib.parse.urlencode(form).encode())
            with urllib.request.urlopen(request, timeout=10) as response:
                reply = json.loads(response.read())
        except OSError as exc:
            raise LoadError(f"Locust master {self.url} did not answer: {exc}") from None
        if not reply.get("success"):
            raise LoadError(f"Locust master refused the run: {reply.get('message')}")
        deadline = time.monotonic() + load.timeout
        while time.monotonic() < deadline:
            time.sleep(0.25)
            with_result = _get(f"{self.url}/lab/result")
            if with_result["seq"] > before:
                result = with_result["result"]
                result["locust_exit_code"] = 0
                result["load"] = {k: v for k, v in asdict(load).items() if k != "cpus"}
                return result
        raise LoadError(f"no result from Locust master {self.url} within {load.timeout:g} s")

    def quit(self) -> None:
        """Make the master quit (its workers then quit too): the end of a compose run."""
        with contextlib.suppress(OSError):
            urllib.request.urlopen(urllib.request.Request(f"{self.url}/lab/quit", data=b""), timeout=10).close()
