"""What a server's stops under load say (lab/lifecycle/stops.py measures them): per server, the outcomes summed over
its stops, and each fact a graceful stop promises as never, always or sometimes, which is what two runs must share to
agree."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from lab.bundle import StopTest
from loadtests.stopping import OUTCOMES


@dataclass(frozen=True)
class ServerStops:
    """A server's stops (all its cells, one graceful setting): the figures of the report's table."""

    server: str
    graceful: str
    stops: int
    scheduled: int
    outcomes: dict[str, int]  # summed over the stops
    lost: list[int]  # per stop
    lost_before: list[int]  # per stop: of the requests due before SIGTERM
    drain: list[float]  # seconds from SIGTERM to the last answer, per stop
    exit_after: list[float | None]  # seconds from SIGTERM to the exit, per stop (None: killed)
    exit_codes: dict[int | None, int]
    shutdown_ran: int  # stops in which every worker's lifespan shutdown began
    shutdown_completed: int
    killed: int
    leftovers: int  # stops after which something of the server still ran or listened

    @property
    def median_drain(self) -> float | None:
        return median(self.drain) if self.drain else None

    def facts(self) -> dict[str, int]:
        """What a graceful stop promises, each as the number of stops in which it held. The counts (lost per stop,
        refused, drain) scale with each cell's rate and the moment the listener closed; these do not, so two runs
        agree on a server's outcome when each has the same extent (never, always or sometimes)."""
        return {
            "exit 0": self.exit_codes.get(0, 0), "lifespan shutdown completed": self.shutdown_completed,
            "a request due before SIGTERM lost": sum(n > 0 for n in self.lost_before), "killed": self.killed,
            "something left behind": self.leftovers,
        }  # fmt: skip

    def extent(self, fact: str) -> str:
        n = self.facts()[fact]
        return "never" if n == 0 else "in every stop" if n == self.stops else f"in {n} of {self.stops} stops"

    def kinds(self) -> dict[str, str]:
        """Each fact's extent as never, always or sometimes: what two runs must share to agree."""
        return {f: "never" if n == 0 else "always" if n == self.stops else "sometimes" for f, n in self.facts().items()}

    def outcome(self) -> str:
        return "; ".join(f"{fact} {self.extent(fact)}" for fact in self.facts())


def by_server(stops: list[StopTest]) -> list[ServerStops]:
    groups: dict[tuple[str, str], list[StopTest]] = {}
    for s in stops:
        groups.setdefault((s.cell.server, s.graceful), []).append(s)
    found = []
    for (server, graceful), group in sorted(groups.items()):
        total: Counter[str] = Counter()
        for s in group:
            total.update(s.load.outcomes)
        found.append(
            ServerStops(
                server=server,
                graceful=graceful,
                stops=len(group),
                scheduled=sum(s.load.scheduled for s in group),
                outcomes={o: total[o] for o in OUTCOMES},
                lost=[s.lost for s in group],
                lost_before=[s.load.lost_before for s in group],
                drain=[s.load.last_answer for s in group if s.load.last_answer is not None],
                exit_after=[s.exit_after for s in group],
                exit_codes=dict(Counter(s.server.exit_code for s in group)),
                shutdown_ran=sum(s.server.shutdown_ran for s in group),
                shutdown_completed=sum(s.server.shutdown_completed for s in group),
                killed=sum(s.server.killed for s in group),
                leftovers=sum(bool(s.server.leftovers or s.server.still_listening) for s in group),
            )
        )
    return found


def outcomes(stops: Sequence[StopTest]) -> dict[str, ServerStops]:
    """Per server, its stops with the lab's timeout (the runner's stop phase)."""
    return {s.server: s for s in by_server(list(stops)) if s.graceful == "lab"}
