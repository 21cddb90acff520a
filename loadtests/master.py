"""The lab's HTTP API on a long-lived Locust master (its web UI's Flask app): what the runner, in another process or
container, drives it through besides Locust's own POST /swarm. loadtests/remote.py is its typed client; every reply
is one of the records below, as JSON.

    GET  /lab/info            Info: the master's CPUs (the load CPUs)
    GET  /lab/seq             Seq: how many runs it has finished (polled while a run lasts: small on purpose)
    GET  /lab/result          Outcome: the latest run's result, or why there is none
    POST /lab/referee  Load   RefereeReply: wrk (h2load over h2c) on the master's CPUs against the load's target
    POST /lab/quit            Quitting: the master ends (and its workers with it) once this reply is sent
"""

from __future__ import annotations

import os
import signal

import gevent
from flask import Flask, Response, request
from locust.env import Environment

from core.errors import LabError, ProcessFailedError
from core.model import Record
from loadtests import referee
from loadtests.api import Info, Quitting, RefereeReply, Seq
from loadtests.load import Load
from loadtests.session import Session


def serve(app: Flask, session: Session, environment: Environment) -> None:
    """Add the lab's endpoints to the master's web UI."""

    def reply(record: Record) -> Response:
        return Response(record.model_dump_json(), mimetype="application/json")

    def run_referee() -> Response:
        try:
            load = Load.model_validate_json(request.get_data())
            found = referee.referee(load, tuple(sorted(os.sched_getaffinity(0))))
        except ProcessFailedError as exc:
            return reply(RefereeReply(result=None, error=f"{exc}: {exc.log_tail.strip()[:500]}"))
        except LabError as exc:
            return reply(RefereeReply(result=None, error=str(exc)))
        return reply(RefereeReply(result=found, error=None))

    def quit_soon() -> Response:
        environment.process_exit_code = 0
        gevent.spawn_later(0.5, os.kill, os.getpid(), signal.SIGTERM)  # Locust's own SIGTERM path: a clean stop
        return reply(Quitting(quitting=True))

    app.add_url_rule("/lab/info", "lab_info", lambda: reply(Info(cpus=sorted(os.sched_getaffinity(0)))))
    app.add_url_rule("/lab/seq", "lab_seq", lambda: reply(Seq(seq=session.outcome.seq)))
    app.add_url_rule("/lab/result", "lab_result", lambda: reply(session.outcome))
    app.add_url_rule("/lab/referee", "lab_referee", run_referee, methods=["POST"])
    app.add_url_rule("/lab/quit", "lab_quit", quit_soon, methods=["POST"])
