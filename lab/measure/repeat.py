"""One measured repeat on a running server, with its checks, verdict and cost.

A repeat is `ok` only when the server was alive and answering before and after the window, every expected Locust
worker reported, the window is the length asked for, and every whole second of it had correct answers (a server
that hangs or dies mid-window leaves an empty second). Otherwise it is `failed`, with every reason; a failed repeat
counts in no median and no chart, and a resumed run measures it again.
"""

from __future__ import annotations

from typing import Any

from lab import bundle
from lab.bundle import Repeat, ServerFigures
from lab.measure.conditions import conditions, cost, health, window_problems
from lab.measure.instrument import Instrument
from lab.measure.referee import Refereed
from lab.measure.window import WindowFailedError, Work, measured, sides
from lab.verdict import judge
from loadtests.load import LoadResult
from servers.matrix import Cell
from servers.own_app import OwnAppError
from servers.target import RunningServer


def span(result: LoadResult) -> tuple[float, float]:
    return result.window.start, result.window.end


def measure(
    instrument: Instrument,
    server: RunningServer,
    cell: Cell,
    work: Work,
    referee: Refereed,
    earlier: list[str] | None = None,
) -> Repeat:
    """One measured window on the running server, checked before and after, judged with the point's referee so
    far (the closed model's)."""
    rate = work.rate
    head: dict[str, Any] = {
        "schema_version": bundle.SCHEMA_VERSION, "kind": "repeat", "run_id": instrument.run_id, "key": cell.key,
        "cell": cell, "scenario": work.scenario, "offered_rps": rate or None, "repeat": work.number,
        "referee": None, "referee_cost": None,  # `carrying` adds the referee to the repeat it followed
        "attempt": 1 + len(earlier or []), "earlier": list(earlier or []),
    }  # fmt: skip
    try:
        if before := sides([server]):
            raise WindowFailedError(f"before the window: {before[0]}")
        try:
            spec = instrument.load(server, work.scenario, rate, work.duration, work.warmup)
        except OwnAppError as exc:  # a wrong first answer: an error, measured as none
            raise WindowFailedError(str(exc)) from None
        # the open model's latency would carry the speedometer's bursts
        window = measured(instrument, [server], lambda: instrument.loads.run(spec), span, speedometer=not rate)
    except WindowFailedError as exc:
        after = health(server) if exc.load_error else None
        return Repeat.failed(exc.reason + (f"; {after}" if after else ""), **head)
    result, (sample,) = window.result, window.samples
    problems = window_problems(result, spec, instrument.loads.workers)
    if after := health(server):
        problems.append(f"after the window: {after}")
    figures = ServerFigures(
        cpus=list(instrument.server_cpus), startup_seconds=server.report.startup_seconds, **sample.model_dump()
    )
    return Repeat(
        **head,
        status="failed" if problems else "ok",
        failure="; ".join(problems) or None,
        load=result,
        server=figures,
        verdict=judge(result, sample, referee.wrk if not rate else None, referee.why if not rate else ""),
        cost=cost(result.ok, sample, result.load_generator.cpu_seconds),
        conditions=conditions(result, sample, instrument.server_cpus, window.speed, window.timed),
    )


def carrying(record: Repeat, referee: Refereed) -> Repeat:
    """The repeat wrk ran right after, carrying wrk's result and cost, judged again with it."""
    assert record.load is not None and record.server is not None
    found = record.conditions.model_copy(update={"referee_speed": referee.speed}) if record.conditions else None
    return record.model_copy(
        update={
            "referee": referee.wrk,
            "referee_cost": referee.cost,
            "verdict": judge(record.load, record.server, referee.wrk, referee.why),
            "conditions": found,
        }
    )
