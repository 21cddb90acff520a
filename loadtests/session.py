"""One Locust process's part in a measured window: what the listeners of loadtests/locustfile.py call.

Every process (a worker, a lone headless process, the master) keeps one Session. A worker (or a lone process)
drives its users' connections with a flock and records the window; the master opens no connections of its own, but
records its own CPU, collects the workers' snapshots, merges them into the LoadResult and keeps it as the latest
outcome (loadtests/master.py serves it). The window opens `warmup` seconds after every user runs and closes
`duration` seconds later, when the process that drives the run (the master, or the lone process) stops every user.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment
from locust.rpc import Message
from locust.runners import STATE_INIT, STATE_STOPPED, STATE_STOPPING, MasterRunner, WorkerRunner

from core.errors import UsageError
from core.host import atomic_write
from loadtests import flock, recorder, scenarios, ui_stats
from loadtests.api import Outcome
from loadtests.load import (
    SHORTFALL_AT,
    USER_CLASSES,
    GroupResult,
    GroupSide,
    Load,
    LoadError,
    LoadResult,
    SideResult,
    Window,
)

log = logging.getLogger("asgi-bench-lab")
STAND_IN = "http://127.0.0.1:1"  # a web-UI master starts without a host (each /swarm brings one)


class Session:
    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.recorder = recorder.Recorder()
        self.others: list[recorder.Recorder] = []  # a group load's further servers', in the load's order
        self.load: Load | None = None
        self.plan: scenarios.Plan | None = None
        self.flock: flock.Flock | None = None
        self.inbox: list[recorder.Snapshot] = []  # the master's: its workers' snapshots of the current run
        self.outcome = Outcome(seq=0, result=None, error=None)

    # --- the listeners' work ------------------------------------------------------------------------------------
    def attach(self, environment: Environment) -> None:
        """At Locust's init: bad input stops the process here, before any user starts (exit 2); workers get their
        options from the master with each run."""
        self.environment = environment
        if isinstance(environment.runner, WorkerRunner):
            return
        try:
            self.current(stand_in=True)
        except UsageError as exc:
            log.error("%s", exc)
            sys.exit(2)
        if isinstance(environment.runner, MasterRunner):
            environment.runner.register_message("lab_result", self.receive)

    def begin(self) -> None:
        """At test start: this run's load, and for a process that drives connections, its flock."""
        environment = self.env
        self.load = self.current(stand_in=False)
        self.plan = self.load.plan()
        self.inbox.clear()
        options, runner = environment.parsed_options, environment.runner
        if not isinstance(runner, WorkerRunner):  # workers receive it with the other options when they spawn
            options.lab_processes = max(runner.worker_count if isinstance(runner, MasterRunner) else 1, 1)
        if isinstance(runner, MasterRunner):
            return
        processes, index = options.lab_processes, getattr(runner, "worker_index", 0)
        load = self.load
        schedule = flock.Schedule(load.rate / processes, load.arrivals, phase=index / processes) if load.rate else None
        self.others = [recorder.Recorder() for _ in load.group]
        sides = [
            flock.Side(scenarios.Target.parse(side.target, load.named_host), load.plan(side.target) if n else self.plan,
                       rec, side.http, load.streams_of(side))
            for n, (side, rec) in enumerate(zip(load.sides, [self.recorder, *self.others], strict=True))
        ]  # fmt: skip
        group = flock.Group(load.pair_mode, load.slice_seconds, load.settle_seconds) if load.grouped else None
        self.flock = flock.Flock(
            sides, self.report_to_ui, schedule, max(1, load.max_connections // processes), group,
            flock.first_user(index, processes, load.connections),
        )  # fmt: skip

    def spawned(self) -> None:
        """Every user runs: the window opens after the warm-up; the driving process ends the run on time."""
        assert self.load is not None
        runner = self.env.runner
        if isinstance(runner, MasterRunner):
            self.recorder.open()  # the master's own CPU, for the load generator's figures
        else:
            gevent.spawn_later(self.load.warmup, self.open_window)
        if not isinstance(runner, WorkerRunner) and self.load.duration > 0:
            gevent.spawn(self.finish)

    def open_window(self) -> None:
        self.recorder.open()
        self.recorder.peak_connections = len(self.flock.conns) if self.flock else 0
        for other in self.others:
            other.open()

    def stopping(self) -> None:
        self.recorder.close(self.flock.owed() if self.flock else 0)
        for other in self.others:
            other.close()
        if self.flock is not None:
            self.flock.stop()

    def stopped(self) -> None:
        runner = self.env.runner
        if isinstance(runner, WorkerRunner):
            # Sent before the worker reports it stopped, so the master has it once its stop returns.
            runner.send_message("lab_result", self.snapshot().model_dump_json())

    def receive(self, environment: Environment, msg: Message, **kwargs: Any) -> None:
        self.inbox.append(recorder.Snapshot.model_validate_json(msg.data))

    # --- the end of a run -----------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Warm up, measure for the load's duration, stop every user, merge the result, keep it (and write it to
        --lab-out), and quit a headless process."""
        environment, load = self.env, self.load
        assert load is not None
        gevent.sleep(load.warmup + load.duration)
        runner = environment.runner
        master = isinstance(runner, MasterRunner)
        if master:
            self.recorder.close()
            master_cpu: recorder.CpuUse | None = self.recorder.cpu_used()
            stop_now(runner)
            deadline = time.monotonic() + 10
            while len(self.inbox) < runner.worker_count and time.monotonic() < deadline:
                gevent.sleep(0.05)
            snapshots = list(self.inbox)
        else:
            self.recorder.close(self.flock.owed() if self.flock else 0)
            for other in self.others:
                other.close()
            master_cpu = None
            runner.stop()
            snapshots = [self.snapshot()]
        seq = self.outcome.seq + 1
        try:
            result = merged(load, snapshots, master_cpu)
        except LoadError as exc:
            log.error("no result: %s", exc)
            self.outcome = Outcome(seq=seq, result=None, error=str(exc))
        else:
            self.outcome = Outcome(seq=seq, result=result, error=None)
            out = environment.parsed_options.lab_out
            if out:
                atomic_write(Path(out), result.model_dump_json(indent=1) + "\n")
        if environment.parsed_options.headless or environment.parsed_options.autostart:
            runner.quit()

    def snapshot(self) -> recorder.Snapshot:
        """This process's window; for a group load, its further servers' beside the first's."""
        mine = self.recorder.snapshot()
        if self.others:
            mine = mine.model_copy(update={"others": [other.snapshot() for other in self.others]})
        return mine

    # --- helpers ----------------------------------------------------------------------------------------------
    @property
    def env(self) -> Environment:
        assert self.environment is not None, "attach() first"
        return self.environment

    def current(self, stand_in: bool) -> Load:
        """The load the options describe: Locust's host, user count and user class, and the --lab-* options."""
        environment = self.env
        options = environment.parsed_options
        host = environment.host or (STAND_IN if stand_in and environment.web_ui and not options.headless else "")
        classes = {cls.__name__ for cls in environment.user_classes}
        client = "stock" if classes == {USER_CLASSES["stock"]} else "lean"
        return Load.from_options(options, host, max(options.num_users or 1, 1), client)

    def report_to_ui(self, counts_ms: Any, requests: int, length: int, error: str | None) -> None:
        runner = self.environment.runner if self.environment else None
        if runner is not None and runner.stats is not None and self.plan is not None:
            ui_stats.report(runner.stats, self.plan, counts_ms, requests, length, error)


def merged(load: Load, snapshots: list[recorder.Snapshot], master_cpu: recorder.CpuUse | None) -> LoadResult:
    """Every process's snapshot of the window as one result."""
    if not snapshots:
        raise LoadError("no worker sent a result")
    if not all(s.started for s in snapshots):
        raise LoadError("a worker never opened its measured window (stopped during its warm-up)")
    if any(len(s.others) != len(load.group) for s in snapshots):
        raise LoadError(f"a worker sent no figures for some of the group's {len(load.group)} further servers")
    others = [other for s in snapshots for other in s.others]
    histogram, late, errors = recorder.merge([*snapshots, *others])
    started = min(s.started for s in snapshots if s.started)
    ended = max(s.ended or time.time() for s in snapshots)
    seconds = ended - started
    ok = histogram.get_total_count()
    per_quarter = [sum(column) for column in zip(*(s.per_quarter for s in snapshots), strict=False)]
    open_model = load.rate > 0
    scheduled = sum(s.scheduled for s in snapshots)
    plan = load.plan()
    client = USER_CLASSES[load.client]
    return LoadResult(
        scenario=plan.scenario,
        params=plan.params,
        client=client,
        model="open" if open_model else "closed",
        users=load.users,
        http=load.http,
        streams=load.streams,
        offered_rps=float(load.rate) or None,
        arrivals=load.arrivals if open_model else None,
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
        owed=sum(s.owed for s in snapshots),
        peak_connections=sum(s.peak_connections for s in snapshots),
        processes=len(snapshots),
        per_process_ok=[s.ok for s in snapshots],
        load_generator=recorder.load_generator([s.cpu for s in snapshots], master_cpu, client),
        group=grouped(load, snapshots, started, ended) if load.grouped else None,
    )


def grouped(load: Load, snapshots: list[recorder.Snapshot], started: float, ended: float) -> GroupResult:
    """Each server of a group load: its answers and latency, and its correct answers in every whole bucket of the
    window (a bucket that began before the window opened, or ends after it closed, is left out)."""
    width = load.slice_seconds
    first, last = math.ceil(started / width), math.floor(ended / width)  # buckets [first, last) lie inside

    def side(where: GroupSide, snaps: list[recorder.Snapshot]) -> SideResult:
        histogram, _, errors = recorder.merge(snaps)
        counts: Counter[int] = Counter()
        for snap in snaps:
            counts.update(snap.buckets)
        ok = histogram.get_total_count()
        return SideResult(
            target=where.target, http=where.http, requests=ok + sum(errors.values()), ok=ok, errors=dict(errors),
            latency=recorder.latency_summary(histogram), buckets=[counts.get(k, 0) for k in range(first, last)],
        )  # fmt: skip

    per_side = [snapshots, *([s.others[n] for s in snapshots] for n in range(len(load.group)))]
    return GroupResult(
        mode=load.pair_mode, bucket_seconds=width, settle_seconds=load.settle_seconds, first=first,
        sides=[side(where, snaps) for where, snaps in zip(load.sides, per_side, strict=True)],
    )  # fmt: skip


def stop_now(runner: MasterRunner) -> None:
    """Locust 2.47's MasterRunner.stop(), waiting for the workers in steps of 50 ms instead of a second: that second,
    once per run, would be a second of every run's overhead. (The dispatcher is dropped before the workers are told
    to stop, as Locust does, or the master would start them again.)"""
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
