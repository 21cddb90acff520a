"""The work of a group visit (lab/measure/group.py): one side-by-side window per scenario on the group's running
servers, measured again (up to RERUNS times) while their server CPUs are not saturated, since such a window's ratios
say more about the client's or the neighbour's order of service than about the servers' costs."""

from __future__ import annotations

from dataclasses import dataclass

from lab.analysis.side_by_side import again, shared
from lab.bundle import GroupWindow
from lab.measure.group import measure_group
from lab.measure.instrument import Instrument
from lab.measure.window import Work, sides
from lab.run.budget import RERUNS
from lab.run.ledger import Ledger
from lab.run.plan import GroupVisit, GroupWork
from lab.run.progress import Listener
from lab.run.visit import CellDiedError
from servers.target import RunningServer


@dataclass
class GroupRounds:
    instrument: Instrument
    ledger: Ledger
    listener: Listener

    def on(self, started: list[RunningServer], visit: GroupVisit, work: list[GroupWork]) -> None:
        """Each scenario's window on the visit's servers that run it (started in the visit's order, loaded in its
        cells' order); a server that died or hung ends the visit."""
        by_key = {s.cell.key: s for s in started}
        for item in work:
            servers = [by_key[c.key] for c in item.cells]
            record = self.window(servers, visit, item.work)
            self.ledger.record_group(record)
            self.report(record)
            if dead := [s for s in servers if sides([s])]:
                label = item.work.label
                raise CellDiedError(f"{dead[0].cell.key} died or hung: {sides(dead)[0]}", dead[0].cell, label)

    def window(self, servers: list[RunningServer], visit: GroupVisit, work: Work) -> GroupWindow:
        earlier: list[str] = []
        order = [c.key for c in visit.started if c in {s.cell for s in servers}]
        while True:
            record = measure_group(self.instrument, visit.key, servers, order, work, earlier)
            why = again(record)
            if why is None or len(earlier) >= RERUNS:
                return record
            earlier.append(f"attempt {len(earlier) + 1}: {ratios_text(record)}, {why}")
            self.listener.say(f"{visit.key} side by side {work.scenario} #{work.number}: {why}; measuring again")

    def report(self, record: GroupWindow) -> None:
        label = f"{record.key} side by side {record.scenario} #{record.round}"
        found = shared(record)
        if found is None or record.load is None:
            self.listener.measured(f"{label}: FAILED: {record.failure}")
            return
        flags = "" if found.saturated else " (server CPUs not saturated: the client set the pace)"
        errors = sum(sum(s.errors.values()) for s in found.group.sides)
        flags += f" errors={errors}" if errors else ""
        self.listener.measured(f"{label}: {ratios_text(record)}{flags}")


def ratios_text(record: GroupWindow) -> str:
    """Each cell's RPS in the window, and its share of the first cell's: 'raw 6,200; fastapi 1,800 (0.290)'."""
    found = shared(record)
    if found is None:
        return "nothing measured"
    first = found.rates[0]
    return "; ".join(
        f"{key} {rate:,.0f}" + (f" ({rate / first:.3f})" if i and first > 0 else "")
        for i, (key, rate) in enumerate(zip(found.keys, found.rates, strict=True))
    )
