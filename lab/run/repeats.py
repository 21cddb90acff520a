"""The work of a single-cell visit: its repeats on the running server, one after the other. A throughput repeat the
machine disturbed is measured again while the budget allows (lab/run/allowance.py); the first ok repeat of a closed
point is followed by the referee on the same warm server and carries it, and a later one too while the referee's rule
wants wrk again (lab/run/referee_rule.py). A failed repeat on a server that no longer answers ends the visit
(CellDiedError, lab/run/visit.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from lab.bundle import Repeat
from lab.measure import referee as referee_window
from lab.measure import repeat as repeat_window
from lab.measure.conditions import health
from lab.measure.instrument import Instrument
from lab.measure.referee import Refereed
from lab.measure.window import Work
from lab.run.budget import RERUNS, Budget
from lab.run.ledger import Ledger
from lab.run.progress import Listener
from lab.run.referee_rule import RefereeRule
from lab.run.visit import CellDiedError
from loadtests.load import LoadBackend
from servers.matrix import Cell
from servers.target import RunningServer


@dataclass
class Repeats:
    instrument: Instrument
    ledger: Ledger
    listener: Listener
    loads: LoadBackend
    budget: Budget
    rule: RefereeRule
    may_rerun: Callable[[float], bool]  # whether a disturbed repeat that took this long may be measured again
    measured: Callable[[], None]  # a throughput repeat was recorded (the budget counts what is left)

    def on(self, server: RunningServer, cell: Cell, work: list[Work], throughput: bool) -> None:
        for item in work:
            self.one(server, cell, item, throughput)

    def one(self, server: RunningServer, cell: Cell, work: Work, throughput: bool) -> None:
        """One repeat, measured again while disturbed, then the referee after it when the rule says so."""
        scenario, closed = work.scenario, not work.rate
        known = (self.rule.first(cell.key, scenario) or self.carried(cell, scenario)) if closed else None
        first = closed and not self.rule.has_first(cell.key, scenario) and (known is None or known.wrk is None)
        earlier: list[str] = []
        while True:
            began = time.monotonic()
            record = repeat_window.measure(self.instrument, server, cell, work, known or Refereed(None), earlier)
            took = time.monotonic() - began
            self.budget.spent(took, work.warmup, work.duration)
            cond = record.conditions
            if not throughput or not (cond and cond.disturbed and len(earlier) < RERUNS and self.may_rerun(took)):
                break
            self.budget.reruns += 1
            got = f"{record.load.rps:,.0f} RPS, " if record.load else ""
            earlier.append(f"attempt {len(earlier) + 1}: {got}{cond.note}")
            self.listener.say(f"{cell.key} {work.label} #{work.number}: disturbed ({cond.note}); measuring again")
        measured = record.ok and record.load is not None and record.server is not None
        again = closed and not first and measured and self.rule.again(self.ledger.ok(cell, scenario))
        if measured and (first or again):
            record = self.referee_after(server, record, first, work.number)
        self.ledger.record(record)
        if throughput:
            self.measured()
        self.report(server, cell, work, record)

    def referee_after(self, server: RunningServer, record: Repeat, first: bool, number: int) -> Repeat:
        """wrk right after the repeat, on the same server; the repeat carries it when it ran (or when it is the
        point's first, so that the reason it did not is kept)."""
        if self.instrument.config.referee_seconds:
            referee = referee_window.measure(self.instrument, server, record.scenario)
        else:
            referee = Refereed(None, "not run")
        if first:
            self.rule.remember(record.key, record.scenario, referee)
        else:
            self.rule.ran_again()
        if referee.wrk:
            said = f"again in round {number}, " if not first else ""
            self.listener.say(
                f"{record.key} {record.scenario}: {referee.wrk.tool} {said}{referee.wrk.rps:,.0f} RPS "
                f"({referee.wrk.seconds:.0f} s)"
            )
        return repeat_window.carrying(record, referee) if first or referee.wrk else record

    def report(self, server: RunningServer, cell: Cell, work: Work, record: Repeat) -> None:
        label = f"{cell.key} {work.label} #{work.number}"
        if not record.ok or record.load is None:
            self.listener.measured(f"{label}: FAILED: {record.failure}")
            self.loads.check()  # a lost worker or master stops the run here, not one failed repeat at a time
            if problem := health(server):
                raise CellDiedError(record.failure or problem, cell, work.label)
            return
        result, verdict = record.load, record.verdict
        flags = f" limit={verdict.limit}" if verdict and verdict.limit not in ("server", "offered") else ""
        flags += " SHORT-OF-RATE" if result.rate_shortfall else ""
        flags += f" errors={sum(result.errors.values())}" if result.errors else ""
        p99 = result.latency.percentiles_us.get("p99", 0) / 1000
        self.listener.measured(f"{label}: {result.rps:,.0f} RPS, p99 {p99:.2f} ms{flags}")

    def carried(self, cell: Cell, scenario: str) -> Refereed | None:
        """What the referee said on this point before (also before a resume), from the repeat that carries it."""
        carrier = self.ledger.referee_carrier(cell, scenario)
        return Refereed(carrier.referee, "", carrier.referee_cost) if carrier else None
