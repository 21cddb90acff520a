"""What limited a measurement: the server, the client (Locust), or unclear; decided from the figures of both sides
and from the referee (wrk on the same cell, in the same run), never from one side alone.

A repeat is judged on CPU (judge), in order:
  unclear  the busiest load CPU (or Locust worker) and the server's CPUs were both at least SATURATED busy;
  client   the busiest load CPU or the busiest Locust worker was at least SATURATED busy;
  unclear  the referee itself was out of CPU and the server's CPUs were not saturated;
  server   otherwise: the server's CPUs were saturated, or neither side's were (the server's answer time sets the
           pace of a closed loop).
Busiest CPU and busiest worker, never means: one saturated worker or CPU is enough to limit a run.

A point (a cell and scenario, all its repeats) is then judged against the referee (point_verdict). wrk runs on the
same warm server right after the point's first repeat, and again after a later round's repeat while the ratio so far
lies outside REFEREE_SHARE-REFEREE_ABOVE (lab/run/referee_rule.py). Each wrk run is set beside the repeat it followed
(adjacent windows on one server), and the point's ratio is the median over wrk's runs. At or above REFEREE_SHARE the
repeats' verdicts stand. Below it the point is `client` only when the client's own evidence says so: a repeat's load
side was out of CPU, its busiest CPU or worker in wrk's rounds was at least CLIENT_BUSY, or Locust reached
NEAR_CEILING of the calibration's client ceiling; otherwise `unclear` (short of wrk while the client had room: two
windows on a machine whose speed changes within a second). Without a referee (a scenario wrk cannot replay, or wrk
not installed) only the CPU rules decide, and the reason says so. An open-model repeat that served its offered rate
was limited by the offer (`offered`); one that fell short is judged by the same CPU rules.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from loadtests.load import H2LOAD_LIMITS, LoadResult, RefereeResult
from servers.target import ServerSample

SATURATED = 0.90  # a CPU, or a worker's core, at least this busy is out of CPU
REFEREE_SHARE = 0.90  # Locust at or above this share of wrk's RPS measured what the server can do
REFEREE_ABOVE = 1.05  # Locust above this share of wrk's: more likely wrk's run caught a slow spell (wrk runs again)
CLIENT_BUSY = 0.8  # the client's busiest CPU or worker at least this busy in wrk's rounds: it may have set the pace
NEAR_CEILING = 0.85  # Locust at least this share of the calibration's client ceiling: at its limit

Limit = Literal["server", "client", "unclear", "offered"]
ShownLimit = Literal["server", "client", "unclear", "offered", "shared"]  # shared: the server and Locust shared CPUs


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    limit: Limit
    reason: str  # the rule that decided, with the figures
    lab_vs_referee: float | None
    busiest_load_cpu: float
    busiest_worker: float
    server_cpus_busy: float  # the server CPUs' mean busy share in the window


def judge(result: LoadResult, server: ServerSample, referee: RefereeResult | None, no_referee_why: str = "") -> Verdict:
    lg = result.load_generator
    load_cpu, worker = lg.busiest_cpu, lg.busiest_worker
    busy = server.cpus_busy.values()
    server_busy = sum(busy) / len(busy) if busy else server.cpu_cores
    ratio = round(result.rps / referee.rps, 3) if referee and referee.rps > 0 else None
    figures = f"server CPUs {server_busy:.0%} busy; busiest load CPU {load_cpu:.0%}, busiest Locust worker {worker:.0%}"
    if referee is not None and ratio is not None:
        tool = referee.tool
        figures += f"; Locust {result.rps:,.0f} RPS = {ratio:.2f}× {tool}'s {referee.rps:,.0f}"
        figures += f" ({tool} itself {referee.cpu_utilization:.0%} of its cores"
        if tool == "h2load":
            figures += f", {referee.streams} streams per connection; {H2LOAD_LIMITS}"
        figures += ")"
    if referee is None:
        figures += f"; no referee{': ' + no_referee_why if no_referee_why else ''}, so decided on CPU alone"
    client_out = load_cpu >= SATURATED or worker >= SATURATED
    server_out = server_busy >= SATURATED

    def verdict(limit: Limit, rule: str) -> Verdict:
        return Verdict(
            limit=limit,
            reason=f"{limit}: {rule} ({figures})",
            lab_vs_referee=ratio,
            busiest_load_cpu=load_cpu,
            busiest_worker=worker,
            server_cpus_busy=round(server_busy, 4),
        )

    if result.model == "open" and not result.rate_shortfall:
        return verdict("offered", f"the offered {result.offered_rps:,.0f} RPS was served")
    if client_out and server_out:
        return verdict("unclear", "both the load generator and the server were out of CPU")
    if client_out:
        return verdict("client", "the load generator was out of CPU")
    if referee is not None and referee.saturated and not server_out:
        return verdict(
            "unclear", f"{referee.tool} was out of CPU and the server was not, so its figure is its own ceiling"
        )
    if server_out:
        return verdict("server", "the server's CPUs were saturated")
    return verdict("server", "neither side was out of CPU: the server's answer time set the pace")


def point_verdict(
    limits: Sequence[Limit],
    pairs: Sequence[tuple[float, float]],
    client_busy: float,
    ceiling: float | None,
    tool: str = "wrk",
) -> tuple[Limit, str]:
    """A closed-model point's limit over its repeats' verdicts (`limits`), checked against the referee (`tool`: wrk, or
    h2load on an h2c cell): `pairs` holds, per referee run, the repeat it followed on the same warm server and its
    RPS. Short of the referee is `client` only where the client's own evidence agrees (`client_busy`: its busiest
    CPU or worker in those rounds; `ceiling`: the calibration's client ceiling, when measured); else `unclear`."""
    cpu = worst(limits)
    ratios = [rps / wrk for rps, wrk in pairs if wrk > 0]
    if not ratios:
        return cpu, f"{cpu}: decided on CPU alone (no referee)"
    ratio, locust = statistics.median(ratios), statistics.median(rps for rps, _ in pairs)
    if len(pairs) == 1:
        ((rps, wrk),) = pairs
        said = f"Locust {rps:,.0f} RPS in {tool}'s round = {ratio:.2f}× {tool}'s {wrk:,.0f}"
    else:
        runs = ", ".join(f"{wrk:,.0f}" for _, wrk in pairs)
        said = f"Locust in {tool}'s {len(pairs)} rounds = {ratio:.2f}× {tool}'s (median; {tool} {runs} RPS)"
    if ratio >= REFEREE_SHARE:
        return cpu, f"{cpu}: {said}; repeats: {', '.join(limits)}"
    if cpu == "client":
        return "client", f"client: {said}, and a repeat's load side was out of CPU"
    share = locust / ceiling if ceiling else None
    evidence = f"its busiest CPU or worker {client_busy:.0%} busy" + (
        f", {share:.0%} of its calibrated ceiling" if share is not None else ""
    )
    if client_busy >= CLIENT_BUSY or (share is not None and share >= NEAR_CEILING):
        return "client", f"client: {said}, and the client was at its limit ({evidence}): the server can do more"
    return "unclear", (
        f"unclear: {said}, but the client had room ({evidence}), so it was not the client's limit: "
        "adjacent windows on a machine that changes speed; read the figure as approximate"
    )


WORST_FIRST: tuple[Limit, ...] = ("client", "unclear", "server", "offered")


def worst(limits: Sequence[Limit]) -> Limit:
    """A point's verdict over its repeats: client if any repeat was, else unclear if any was, else the rest."""
    return next((limit for limit in WORST_FIRST if limit in limits), "offered")
