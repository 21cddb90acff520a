"""The lab's Locust users: every scenario, every answer checked whole, latency into an HDR histogram.

    locust -f loadtests/locustfile.py --headless -u 64 -r 1000 --host http://127.0.0.1:8000 \\
        --lab-scenario plaintext --lab-duration 10 --lab-out result.json LeanUser

LeanUser is the lab's client: each user is one keep-alive connection, and one loop per process drives them all
(loadtests/flock.py). StockUser is Locust's FastHttpUser doing the same work, kept for comparison. `--processes N`
(or `--master` plus `--worker` processes, on this or another machine) spreads users over N worker processes; each
keeps its own histograms and the master merges them (loadtests/session.py). A master with a web UI also serves the
lab's API (loadtests/master.py). The `--lab-*` options are the fields of loadtests/load.py's Load.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from locust import FastHttpUser, User, constant, events, task
from locust.env import Environment

from loadtests import master
from loadtests.load import Load
from loadtests.session import Session

# Every run spawns its users at once, on purpose (the window opens when all run): Locust's warning about it is noise.
logging.getLogger("locust.runners").addFilter(lambda record: "spawn rate is very high" not in record.getMessage())
SESSION = Session()


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any, **kwargs: Any) -> None:
    group = parser.add_argument_group("ASGI Bench Lab")
    Load.add_arguments(group)
    group.add_argument("--lab-out", default="", help="write the merged result as JSON here")


@events.init.add_listener
def on_init(environment: Environment, **kwargs: Any) -> None:
    SESSION.attach(environment)
    if environment.web_ui:  # a long-lived master (the compose lab), driven through /swarm and the lab's API
        master.serve(environment.web_ui.app, SESSION, environment)


@events.test_start.add_listener
def on_test_start(**kwargs: Any) -> None:
    SESSION.begin()


@events.spawning_complete.add_listener
def on_spawned(**kwargs: Any) -> None:
    SESSION.spawned()


@events.test_stopping.add_listener
def on_stopping(**kwargs: Any) -> None:
    SESSION.stopping()


@events.test_stop.add_listener
def on_test_stop(**kwargs: Any) -> None:
    SESSION.stopped()


class FlockUser(User):
    """A user whose keep-alive connection the process's one loop drives, with every other user's."""

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.flock = SESSION.flock
        self.flock.join()

    def on_stop(self) -> None:
        self.flock.leave()

    @task
    def hold(self) -> None:
        while True:  # the loop does the requests; the user only keeps its connection until Locust stops it
            gevent.sleep(3600)


class LeanUser(FlockUser):
    """The lab's client."""


class StockUser(FastHttpUser):
    """Locust's FastHttpUser doing LeanUser's work (closed model), for comparing the two clients."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.body = SESSION.plan.request.partition(b"\r\n\r\n")[2]
        self.headers = {"Content-Type": "application/octet-stream"} if self.body else {}

    @task
    def request(self) -> None:
        plan, started = SESSION.plan, time.perf_counter()
        with self.client.request(
            plan.method,
            plan.path,
            data=self.body or None,
            headers=self.headers,
            catch_response=True,
            name=plan.scenario,
        ) as response:
            error = None
            if response.status_code != plan.status:
                error = f"status {response.status_code}"
            elif (response.content or b"") != plan.body:
                error = f"wrong body ({len(response.content or b'')} bytes, expected {len(plan.body)})"
            if error:
                response.failure(error)
        if error is None:
            SESSION.recorder.success(time.perf_counter() - started)
        else:
            SESSION.recorder.failure(error)
