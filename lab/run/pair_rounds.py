"""The work of a pair visit (an A/B run's pair rounds, lab/measure/pair.py): one paired window per scenario on both
variants' running servers, measured again (up to RERUNS times) while the machine disturbs it or the server CPUs are
not saturated, since such a window's B ÷ A says more about the client's or the neighbour's order of service."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lab.analysis.pair_window import again, log_ratio, saturated
from lab.bundle import PairWindow
from lab.measure.instrument import Instrument
from lab.measure.pair import measure_pair
from lab.measure.window import Work, sides
from lab.run.budget import RERUNS
from lab.run.ledger import Ledger
from lab.run.plan import PairVisit
from lab.run.progress import Listener
from lab.run.visit import CellDiedError
from servers.target import RunningServer


@dataclass
class PairRounds:
    instrument: Instrument
    ledger: Ledger
    listener: Listener

    def on(self, servers: list[RunningServer], visit: PairVisit, work: list[Work]) -> None:
        """Each scenario's window on the visit's two servers (started in the visit's order); a server that died or
        hung ends the visit."""
        by_key = {s.cell.key: s for s in servers}
        a, b = by_key[visit.a.key], by_key[visit.b.key]
        for item in work:
            record = self.window(a, b, visit, item)
            self.ledger.record_pair(record)
            self.report(record)
            if dead := [s for s in (a, b) if sides([s])]:
                raise CellDiedError(f"{dead[0].cell.key} died or hung: {sides(dead)[0]}", dead[0].cell, item.label)

    def window(self, a: RunningServer, b: RunningServer, visit: PairVisit, work: Work) -> PairWindow:
        earlier: list[str] = []
        while True:
            record = measure_pair(self.instrument, a, b, visit.base, visit.first, work, earlier)
            why = again(record)
            if why is None or len(earlier) >= RERUNS:
                return record
            found = log_ratio(record)
            earlier.append(f"attempt {len(earlier) + 1}: B/A {math.exp(found or 0.0):.3f}, {why}")
            self.listener.say(f"{visit.base.key} A/B {work.scenario} #{work.number}: {why}; measuring again")

    def report(self, record: PairWindow) -> None:
        label = f"{record.key} A/B {record.scenario} #{record.round}"
        found = log_ratio(record)
        if not record.ok or found is None or record.load is None or record.load.pair is None:
            self.listener.measured(f"{label}: FAILED: {record.failure}")
            return
        pair = record.load.pair
        flags = "" if saturated(record) else " (server CPUs not saturated: the client set the pace)"
        errors = sum(pair.a.errors.values()) + sum(pair.b.errors.values())
        flags += f" errors={errors}" if errors else ""
        self.listener.measured(
            f"{label}: B/A {math.exp(found):.3f} ({pair.a.ok / record.load.window.seconds:,.0f} and "
            f"{pair.b.ok / record.load.window.seconds:,.0f} RPS side by side){flags}"
        )
