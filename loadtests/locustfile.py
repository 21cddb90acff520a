"""The lab's Locust users: every scenario, every answer checked whole, latency into an HDR histogram.

    locust -f loadtests/locustfile.py --headless -u 64 -r 1000 --host http://127.0.0.1:8000 \\
        --lab-scenario plaintext --lab-duration 10 --lab-out result.json LeanUser

LeanUser is the lab's client: each user is one keep-alive connection, and one loop per process drives them all
(loadtests/flock.py). StockUser is Locust's FastHttpUser doing the same work, kept for comparison. `--processes N`
(or `--master` plus `--worker` processes, on this or another machine) spreads users over N worker processes; each
keeps its own histograms and the master merges them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, User, constant, events, task
from locust.env import Environment
from locust.rpc import Message
from locust.runners import STATE_INIT, STATE_STOPPED, STATE_STOPPING, MasterRunner, WorkerRunner
from locust.stats import StatsEntry, bucket_response_time

from core.host import UsageError, atomic_write
from loadtests import flock, recorder, referee, scenarios
from loadtests.load import SHORTFALL_AT, Load, LoadError, LoadResult, Window
from servers.matrix import MatrixError

log = logging.getLogger("asgi-bench-lab")
# Every run spawns its users at once, on purpose (the window opens when all run): Locust's warning about it is noise.
logging.getLogger("locust.runners").addFilter(lambda record: "spawn rate is very high" not in record.getMessage())
RECORDER = recorder.Recorder()
RESULTS: list[dict[str, Any]] = []  # the master's inbox of worker snapshots
PLAN: scenarios.Plan | None = None
FLOCK: flock.Flock | None = None
ENV: Environment | None = None
LAST: dict[str, Any] = {"seq": 0, "result": None}  # the latest run's result (LoadResult as JSON) at /lab/result


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("ASGI Bench Lab")
    group.add_argument("--lab-scenario", default="plaintext", help="scenario name")
    group.add_argument("--lab-params", default="", help="overrides: key=value,key=value")
    group.add_argument(
        "--lab-rate", type=float, default=0.0, help="open model: requests/s offered in all; 0 = closed model"
    )
    group.add_argument("--lab-arrivals", default="poisson", help="open model: poisson (default) or uniform")
    group.add_argument(
        "--lab-max-connections", type=int, default=1024, help="open model: connections at most, all processes"
    )
    group.add_argument("--lab-warmup", type=float, default=0.0, help="unrecorded seconds before the window opens")
    group.add_argument("--lab-duration", type=float, default=0.0, help="seconds to measure, then stop (and quit)")
    group.add_argument("--lab-out", default="", help="write the merged result as JSON here")


def make_plan(environment: Environment) -> scenarios.Plan:
    """The run's plan. A web-UI master may start without a host (each /swarm brings one): check the rest then."""
    options = environment.parsed_options
    if environment.host or not environment.web_ui or options.headless or options.autostart:
        target = scenarios.Target.parse(environment.host or "")
    else:
        target = scenarios.Target("127.0.0.1", 80)
    if options.lab_arrivals not in ("poisson", "uniform"):
        raise UsageError(f"--lab-arrivals {options.lab_arrivals!r}: give poisson or uniform")
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
            raise UsageError("StockUser (FastHttpUser) has no websocket client; use LeanUser for the ws scenario")
    except (MatrixError, UsageError) as exc:
        log.error("%s", exc)
        sys.exit(2)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("lab_result", lambda environment, msg, **kw: RESULTS.append(msg.data))
    if environment.web_ui:
        # A long-lived master (the compose lab) is driven through Locust's own /swarm; the result comes back here.
        app = environment.web_ui.app
        app.add_url_rule("/lab/result", "lab_result", lambda: LAST)
        # polled while a run lasts, on the load CPUs: the sequence number alone, not the whole result each time
        app.add_url_rule("/lab/seq", "lab_seq", lambda: {"seq": LAST["seq"]})
        app.add_url_rule("/lab/info", "lab_info", lambda: {"cpus": sorted(os.sched_getaffinity(0))})
        app.add_url_rule("/lab/referee", "lab_referee", run_referee, methods=["POST"])
        app.add_url_rule("/lab/quit", "lab_quit", lambda: quit_soon(environment), methods=["POST"])


@events.test_start.add_listener
def resolve_plan(environment: Environment, **kwargs: Any) -> None:
    global PLAN, FLOCK
    PLAN = make_plan(environment)
    RESULTS.clear()
    options = environment.parsed_options
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        # Workers receive these with the other options when they spawn.
        processes = runner.worker_count if isinstance(runner, MasterRunner) else 1
        options.lab_processes = max(processes, 1)
    if isinstance(runner, MasterRunner):
        return
    processes, index = options.lab_processes, getattr(runner, "worker_index", 0)
    schedule = None
    if options.lab_rate > 0:
        schedule = flock.Schedule(options.lab_rate / processes, options.lab_arrivals, phase=index / processes)
    FLOCK = flock.Flock(
        PLAN,
        scenarios.Target.parse(environment.host),
        RECORDER,
        report_to_ui,
        schedule,
        max(1, options.lab_max_connections // processes),
    )


@events.spawning_complete.add_listener
def start_measuring(user_count: int, **kwargs: Any) -> None:
    """The window opens --lab-warmup seconds after every user runs (the master tells the workers so)."""
    options = ENV.parsed_options
    if isinstance(ENV.runner, MasterRunner):
        RECORDER.open()  # the master's own CPU, for the load generator's figures
    else:
        gevent.spawn_later(options.lab_warmup, open_window)
    if not isinstance(ENV.runner, WorkerRunner) and options.lab_duration > 0:
        gevent.spawn(finish, ENV)


def open_window() -> None:
    RECORDER.open()
    RECORDER.peak_connections = len(FLOCK.conns) if FLOCK else 0


@events.test_stopping.add_listener
def stop_measuring(**kwargs: Any) -> None:
    RECORDER.close(FLOCK.owed() if FLOCK else 0)
    if FLOCK is not None:
        FLOCK.stop()


@events.test_stop.add_listener
def send_result(environment: Environment, **kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        # Sent before the worker reports it stopped, so the master has it once runner.stop() returns.
        environment.runner.send_message("lab_result", RECORDER.snapshot())


def finish(environment: Environment) -> None:
    """Warm up, measure for --lab-duration seconds, stop every user, write the merged result, quit."""
    options = environment.parsed_options
    gevent.sleep(options.lab_warmup + options.lab_duration)
    master = isinstance(environment.runner, MasterRunner)
    if master:
        RECORDER.close()
        master_cpu = RECORDER.cpu_used()
    else:
        RECORDER.close(FLOCK.owed() if FLOCK else 0)
        master_cpu = None
    stop_now(environment.runner) if master else environment.runner.stop()
    if master:
        deadline = time.monotonic() + 10
        while len(RESULTS) < environment.runner.worker_count and time.monotonic() < deadline:
            gevent.sleep(0.05)
        snapshots = list(RESULTS)
    else:
        snapshots = [RECORDER.snapshot()]
    try:
        result = make_result(environment, snapshots, master_cpu)
    except LoadError as exc:
        log.error("no result: %s", exc)
        LAST.update(seq=LAST["seq"] + 1, result=None, error=str(exc))
    else:
        LAST.update(seq=LAST["seq"] + 1, result=result.model_dump(mode="json"), error=None)
        if options.lab_out:
            atomic_write(Path(options.lab_out), result.model_dump_json(indent=1) + "\n")
    if options.headless or options.autostart:
        environment.runner.quit()


def stop_now(runner: MasterRunner) -> None:
    """MasterRunner.stop() of Locust 2.47, but waiting for the workers in steps of 50 ms, not of a second: that
    second, once per run, would be a second of every run's overhead."""
    if runner.state in (STATE_INIT, STATE_STOPPED, STATE_STOPPING):
        return
    runner.environment.events.test_stopping.fire(environment=runner.environment)
    runner.final_user_classes_count = {**runner.reported_user_classes_count}
    runner.update_state(STATE_STOPPING)
    runner._users_dispatcher = None
    for client in runner.clients.all:
        runner.server.send_to_client(Message("stop", None, client.id))
    deadline = time.monotonic() + runner.environment.stop_timeout + 60
    while runner.user_count != 0 and time.monotonic() < deadline:
        gevent.sleep(0.05)
    runner.environment.events.test_stop.fire(environment=runner.environment)


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


def make_result(environment: Environment, snapshots: list[dict[str, Any]], master_cpu: dict | None) -> LoadResult:
    options = environment.parsed_options
    if not snapshots:
        raise LoadError("no worker sent a result")
    if not all(s["started"] for s in snapshots):
        raise LoadError("a worker never opened its measured window (stopped during its warm-up)")
    histogram, late, errors = recorder.merge(snapshots)
    started = min(s["started"] for s in snapshots if s["started"])
    ended = max(s["ended"] or time.time() for s in snapshots)
    seconds = ended - started
    ok = histogram.get_total_count()
    client = "+".join(cls.__name__ for cls in environment.user_classes)
    per_quarter = [sum(column) for column in zip(*(s["per_quarter"] for s in snapshots), strict=False)]
    open_model = options.lab_rate > 0
    scheduled = sum(s["scheduled"] for s in snapshots)
    return LoadResult(
        scenario=PLAN.scenario,
        params=PLAN.params,
        client=client,
        model="open" if open_model else "closed",
        users=options.num_users,
        offered_rps=float(options.lab_rate) or None,
        arrivals=options.lab_arrivals if open_model else None,
        rate_shortfall=ok < SHORTFALL_AT * scheduled if open_model else None,
        window=Window(start=started, end=ended, seconds=round(seconds, 4)),
        requests=ok + sum(errors.values()),
        ok=ok,
        errors=dict(errors),
        rps=round(ok / seconds, 2) if seconds > 0 else 0.0,
        per_second=recorder.whole_seconds(per_quarter),
        per_quarter=per_quarter,
        latency=recorder.latency_summary(histogram),
        send_lateness=recorder.latency_summary(late) if open_model else None,
        scheduled=scheduled,
        owed=sum(s["owed"] for s in snapshots),
        peak_connections=sum(s["peak_connections"] for s in snapshots),
        processes=len(snapshots),
        per_process_ok=[recorder.count(s) for s in snapshots],
        load_generator=recorder.load_generator([s["cpu"] for s in snapshots], master_cpu, client),
    )


# --- Locust's own statistics (its web UI), updated in batches -------------------------------------------------------


def log_batch(entry: StatsEntry, counts_ms: Counter[int], requests: int, length: int, now: float) -> None:
    """What StatsEntry.log does for one request, done for a batch of them at once."""
    if entry.use_response_times_cache and entry.last_request_timestamp and int(now) > int(entry.last_request_timestamp):
        entry._cache_response_times(int(now) - 1)
    entry.num_requests += requests
    entry.num_reqs_per_sec[int(now)] += requests
    entry.last_request_timestamp = now
    entry.total_content_length += length
    for ms, count in counts_ms.items():
        entry.total_response_time += ms * count
        entry.response_times[bucket_response_time(ms)] += count
    low, high = min(counts_ms), max(counts_ms)
    entry.min_response_time = low if entry.min_response_time is None else min(entry.min_response_time, low)
    entry.max_response_time = max(entry.max_response_time, high)


def report_to_ui(counts_ms: Counter[int], requests: int, length: int, error: str | None) -> None:
    stats = ENV.runner.stats if ENV and ENV.runner else None
    if stats is None or PLAN is None:
        return
    if error is not None:
        stats.log_error(PLAN.method, PLAN.scenario, error)
    elif requests:
        now = time.time()
        log_batch(stats.total, counts_ms, requests, length, now)
        log_batch(stats.get(PLAN.scenario, PLAN.method), counts_ms, requests, length, now)


# --- the users -----------------------------------------------------------------------------------------------------


class LeanUser(User):
    """The lab's client: this user's connection is driven, with every other of this process, by one loop."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.flock = FLOCK
        self.flock.join()

    def on_stop(self) -> None:
        self.flock.leave()

    @task
    def hold(self) -> None:
        # The loop does the requests; the user only keeps its connection in the flock until Locust stops it.
        while True:
            gevent.sleep(3600)


class StockUser(FastHttpUser):
    """Locust's FastHttpUser doing LeanUser's work (closed model), for comparing the two clients."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.body = PLAN.request.partition(b"\r\n\r\n")[2]
        self.headers = {"Content-Type": "application/octet-stream"} if self.body else {}

    @task
    def request(self) -> None:
        started = time.perf_counter()
        with self.client.request(
            PLAN.method,
            PLAN.path,
            data=self.body or None,
            headers=self.headers,
            catch_response=True,
            name=PLAN.scenario,
        ) as response:
            error = None
            if response.status_code != PLAN.status:
                error = f"status {response.status_code}"
            elif (response.content or b"") != PLAN.body:
                error = f"wrong body ({len(response.content or b'')} bytes, expected {len(PLAN.body)})"
            if error:
                response.failure(error)
        if error is None:
            RECORDER.success(time.perf_counter() - started)
        else:
            RECORDER.failure(error)
