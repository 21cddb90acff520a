"""One visit: the servers of a visit started afresh (one cell, or both sides of a pair, in the order given, each on
its port), its work measured on them, and the servers stopped. A server that fails to start, dies or hangs, or exits
badly is recorded with its log tail against its own cell, which is then left out of the rest of the run (a resumed
run tries it again); the matrix goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lab.run.ledger import Ledger
from lab.run.progress import Listener
from servers.matrix import Cell
from servers.target import RunningServer, ServerError, TargetBackend

HUNG_STOP = 3.0  # seconds a server that stopped answering gets to stop on SIGTERM before SIGKILL


class CellDiedError(Exception):
    """A server of the visit died or stopped answering during its load (`label`: the point it was measuring)."""

    def __init__(self, message: str, cell: Cell, label: str) -> None:
        super().__init__(message)
        self.cell, self.label = cell, label


@dataclass
class Visits:
    """The run's visits, and the cells that failed in this session (left out of its later phases)."""

    targets: TargetBackend
    ledger: Ledger
    listener: Listener
    dead: set[str] = field(default_factory=set)

    def live(self, cells: Sequence[Cell]) -> bool:
        return not any(c.key in self.dead for c in cells)

    def fail(self, cell: Cell, scenario: str | None, phase: str, error: str, log_tail: str) -> None:
        self.ledger.fail(cell, scenario, phase, error, log_tail)
        self.dead.add(cell.key)
        self.listener.say(f"FAILED {cell.key} {scenario or ''} ({phase}): {error.splitlines()[0][:200]}")

    def visit(self, cells: Sequence[Cell], ports: Sequence[int], work: Callable[[list[RunningServer]], None]) -> None:
        """Start the cells' servers, run `work` on them, stop them; every failure recorded against its cell."""
        current, started = cells[0], False
        try:
            with contextlib.ExitStack() as stack:
                servers: list[RunningServer] = []
                for cell, port in zip(cells, ports, strict=False):
                    current = cell
                    servers.append(stack.enter_context(self.targets.serve(cell, port)))
                started = True
                try:
                    work(servers)
                except CellDiedError as exc:
                    self.died(exc, servers)
                    return
                for server in servers:
                    current = server.cell
                    if (code := server.stop()) != 0:
                        self.fail(server.cell, None, "stop", f"server exited {code} after SIGTERM", server.log_tail())
        except ServerError as exc:
            self.fail(current, None, "stop" if started else "start", str(exc), exc.log_tail)

    def died(self, exc: CellDiedError, servers: list[RunningServer]) -> None:
        """A server of the visit died or hung: its log tail kept, every server of the visit stopped at once."""
        dead = next((s for s in servers if s.cell == exc.cell), servers[0])
        tail = dead.log_tail()
        for server in servers:
            with contextlib.suppress(ServerError):
                server.stop(HUNG_STOP)
        self.fail(exc.cell, exc.label, "load", str(exc), tail)
