"""The lab's Locust users: every scenario, every response checked, latency into an HDR histogram.

    locust -f loadtests/locustfile.py --headless -u 64 -r 1000 --host http://127.0.0.1:8000 \\
        --lab-scenario plaintext --lab-duration 10 --lab-out result.json LeanUser

LeanUser is the lab's client (loadtests/lean.py); StockUser is Locust's FastHttpUser doing the same work, kept for
comparison. `--processes N` (or `--master` plus `--worker` processes, on this or another machine) spreads users over
N worker processes; each keeps its own histogram and the master merges them.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, User, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from core.host import UsageError, atomic_write
from loadtests import lean, recorder, referee, scenarios
from loadtests.load import Load, LoadError, LoadResult, Window
from servers.matrix import MatrixError

log = logging.getLogger("asgi-bench-lab")
RECORDER = recorder.Recorder()
RESULTS: list[dict[str, Any]] = []  # the master's inbox of worker snapshots
PLAN: scenarios.Plan | None = None
ENV: Environment | None = None
LAST: dict[str, Any] = {"seq": 0, "result": None}  # the latest run's result (LoadResult as JSON) at /lab/result


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("ASGI Bench Lab")
    group.add_argument("--lab-scenario", default="plaintext", help="scenario name")
    group.add_argument("--lab-params", default="", help="overrides: key=value,key=value")
    group.add_argument(
        "--lab-rate",
        type=float,
        default=0.0,
        help="open model: requests/s offered by all users together; 0 = closed model (no wait)",
    )
    group.add_argument(
        "--lab-duration",
        type=float,
        default=0.0,
        help="seconds to measure after all users are spawned, then stop and quit",
    )
    group.add_argument("--lab-out", default="", help="write the merged result as JSON here")


def make_plan(environment: Environment) -> scenarios.Plan:
    """The run's plan. A web-UI master may start without a host (each /swarm brings one): check the rest then."""
    options = environment.parsed_options
    if environment.host or not environment.web_ui or options.headless or options.autostart:
        target = scenarios.Target.parse(environment.host or "")
    else:
        target = scenarios.Target("127.0.0.1", 80)
    return scenarios.plan(options.lab_scenario, target, scenarios.parse_overrides(options.lab_params))


@events.init.add_listener
def check_options(environment: Environment, **kwargs: Any) -> None:
    """Bad input stops Locust here, before any user starts (workers get their options from the master)."""
    global ENV
    ENV = environment
    if isinstance(environment.runner, WorkerRunner):
        return
    try:
        plan = make_plan(environment)
        if plan.websocket and StockUser in environment.user_classes:
            raise MatrixError("StockUser (FastHttpUser) has no websocket client; use LeanUser for the ws scenario")
    except (MatrixError, UsageError) as exc:
        log.error("%s", exc)
        sys.exit(2)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("lab_result", lambda environment, msg, **kw: RESULTS.append(msg.data))
    if environment.web_ui:
        # A long-lived master (the compose lab) is driven through Locust's own /swarm; the result comes back here.
        app = environment.web_ui.app
        app.add_url_rule("/lab/result", "lab_result", lambda: LAST)
        app.add_url_rule("/lab/info", "lab_info", lambda: {"cpus": sorted(os.sched_getaffinity(0))})
        app.add_url_rule("/lab/referee", "lab_referee", run_referee, methods=["POST"])
        app.add_url_rule("/lab/quit", "lab_quit", lambda: quit_soon(environment), methods=["POST"])


@events.test_start.add_listener
def resolve_plan(environment: Environment, **kwargs: Any) -> None:
    global PLAN
    PLAN = make_plan(environment)
    RESULTS.clear()
    options = environment.parsed_options
    if not isinstance(environment.runner, WorkerRunner):
        # Each user's pace in the open model; workers receive it with the other options when they spawn.
        options.lab_user_interval = options.num_users / options.lab_rate if options.lab_rate > 0 else 0.0


@events.spawning_complete.add_listener
def start_measuring(user_count: int, **kwargs: Any) -> None:
    """The measured window opens when every user runs (the master tells the workers so) and closes at the stop."""
    RECORDER.open()
    if not isinstance(ENV.runner, WorkerRunner) and ENV.parsed_options.lab_duration > 0:
        gevent.spawn(finish, ENV)


@events.test_stopping.add_listener
def stop_measuring(**kwargs: Any) -> None:
    RECORDER.close()


@events.test_stop.add_listener
def send_result(environment: Environment, **kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        # Sent before the worker reports it stopped, so the master has it once runner.stop() returns.
        environment.runner.send_message("lab_result", RECORDER.snapshot())


def finish(environment: Environment) -> None:
    """Measure for --lab-duration seconds, stop every user, write the merged result, quit."""
    options = environment.parsed_options
    gevent.sleep(options.lab_duration)
    RECORDER.close()
    environment.runner.stop()
    if isinstance(environment.runner, MasterRunner):
        deadline = time.monotonic() + 10
        while len(RESULTS) < environment.runner.worker_count and time.monotonic() < deadline:
            gevent.sleep(0.05)
        snapshots = list(RESULTS)
    else:
        snapshots = [RECORDER.snapshot()]
    result = make_result(environment, snapshots)
    LAST.update(seq=LAST["seq"] + 1, result=result.model_dump(mode="json"))
    if options.lab_out:
        atomic_write(Path(options.lab_out), result.model_dump_json(indent=1) + "\n")
    if options.headless or options.autostart:
        environment.runner.quit()


def run_referee() -> dict[str, Any]:
    """POST /lab/referee {load fields}: wrk on this master's CPUs (the load CPUs) against the load's target."""
    from flask import request

    body = request.get_json(force=True)
    try:
        load = Load(**{k: body[k] for k in ("target", "scenario", "params", "users", "duration")})
        result = referee.wrk(load, tuple(sorted(os.sched_getaffinity(0))))
    except (MatrixError, UsageError, LoadError) as exc:
        return {"error": str(exc)}
    return {"result": result.model_dump(mode="json") if result else None}


def quit_soon(environment: Environment) -> dict[str, bool]:
    """End the master (and so its workers) once this answer is sent: the lab run is over."""
    environment.process_exit_code = 0
    gevent.spawn_later(0.5, os.kill, os.getpid(), signal.SIGTERM)  # Locust's own SIGTERM path: clean shutdown
    return {"quitting": True}


def make_result(environment: Environment, snapshots: list[dict[str, Any]]) -> LoadResult:
    options = environment.parsed_options
    histogram, errors = recorder.merge(snapshots)
    started = min(s["started"] for s in snapshots if s["started"])
    ended = max(s["ended"] or time.time() for s in snapshots)
    seconds = ended - started
    ok = histogram.get_total_count()
    client = "+".join(cls.__name__ for cls in environment.user_classes)
    figures, bound, reason = recorder.client_verdict([s["cpu"] for s in snapshots], client)
    return LoadResult(
        scenario=PLAN.scenario,
        params=PLAN.params,
        client=client,
        model="open" if options.lab_rate > 0 else "closed",
        users=options.num_users,
        offered_rps=float(options.lab_rate) or None,
        rate_shortfall=ok / seconds < 0.95 * options.lab_rate if options.lab_rate > 0 and seconds > 0 else None,
        window=Window(start=started, end=ended, seconds=round(seconds, 4)),
        requests=ok + sum(errors.values()),
        ok=ok,
        errors=dict(errors),
        rps=round(ok / seconds, 2) if seconds > 0 else 0.0,
        latency=recorder.latency_summary(histogram),
        processes=len(snapshots),
        per_process_ok=[recorder.count(s) for s in snapshots],
        load_generator=figures,
        client_bound=bound,
        client_bound_reason=reason,
    )


class Paced:
    """Closed model: go at once. Open model: wait for this user's next slot; latency counts from the slot, so a
    slow server cannot hide its queueing (no coordinated omission)."""

    def __init__(self, user: User) -> None:
        self.interval = getattr(user.environment.parsed_options, "lab_user_interval", 0.0)
        self.next = time.perf_counter() + random.random() * self.interval

    def start(self) -> float:
        if not self.interval:
            return time.perf_counter()
        slot = self.next
        self.next += self.interval
        delay = slot - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        return slot


def report(user: User, started: float, length: int, error: str | None) -> None:
    elapsed = time.perf_counter() - started
    if error is None:
        RECORDER.success(elapsed)
    else:
        RECORDER.failure(error)
    user.environment.events.request.fire(
        request_type=PLAN.method,
        name=PLAN.scenario,
        response_time=elapsed * 1000,
        response_length=length,
        exception=lean.ResponseError(error) if error else None,
        context={},
    )


class LeanUser(User):
    """The lab's client: a keep-alive socket per user, pre-encoded request, exact check of every answer."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.pace = Paced(self)
        self.conn = lean.Connection(scenarios.Target.parse(self.environment.host))
        if PLAN.websocket:
            self.conn.websocket_open(PLAN.handshake(self.conn.target))

    def on_stop(self) -> None:
        self.conn.close()

    @task
    def requests(self) -> None:
        # One task that loops until Locust stops the user: the per-task scheduling would cost more than a request.
        while True:
            started = self.pace.start()
            body = b""
            try:
                if PLAN.websocket:
                    body = self.conn.websocket_echo(PLAN.request)
                    error = lean.check(PLAN, 101, body)
                else:
                    status, body = self.conn.http(PLAN.request)
                    error = lean.check(PLAN, status, body)
            except (OSError, lean.ProtocolError, ValueError) as exc:
                error = type(exc).__name__
                if PLAN.websocket:
                    self.conn.websocket_open(PLAN.handshake(self.conn.target))
                else:
                    self.conn.close()
            report(self, started, len(body), error)


class StockUser(FastHttpUser):
    """Locust's FastHttpUser doing LeanUser's work, for comparing the two clients."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.pace = Paced(self)
        self.body = PLAN.request.partition(b"\r\n\r\n")[2]
        self.headers = {"Content-Type": "application/octet-stream"} if self.body else {}

    @task
    def request(self) -> None:
        started = self.pace.start()
        with self.client.request(
            PLAN.method,
            PLAN.path,
            data=self.body or None,
            headers=self.headers,
            catch_response=True,
            name=PLAN.scenario,
        ) as response:
            error = lean.check(PLAN, response.status_code, response.content or b"")
            if error:
                response.failure(error)
        if error is None:
            RECORDER.success(time.perf_counter() - started)
        else:
            RECORDER.failure(error)
