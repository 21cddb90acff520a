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
lies outside REFEREE_SHARE-REFEREE_ABOVE (lab/referee_rule.py). For each wrk run, the median of Locust's repeats, each
brought to the machine speed of that run's round and CPU (lab/stats.py: round and speed factors), over its figure;
the point's ratio is the median over wrk's runs. At or above REFEREE_SHARE the repeats' verdicts stand. Below it the
point is `client` when the gap is beyond the noise (twice the noise of that ratio: wrk's runs, each with a lone run's
noise, and the median of n adjusted repeats, lab/results.py: Point.referee_noise; at least 1 - REFEREE_SHARE) or a
repeat's load side was out of CPU; otherwise `unclear` (short of wrk, but within what this machine's noise can do to
the two). Without a referee (a scenario wrk cannot replay, or wrk not installed) only the CPU rules decide, and the
reason says so. An open-model repeat that served its offered rate was limited by the offer (`offered`); one that fell
short is judged by the same CPU rules.
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

Limit = Literal["server", "client", "unclear", "offered"]


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


def referee_ratio(pairs: Sequence[tuple[Sequence[float], float]]) -> float | None:
    """Locust ÷ wrk over wrk's runs: for each run, the median of Locust's repeats brought to that run's round and CPU
    speed over its RPS; the median of those ratios (None without a run)."""
    ratios = [statistics.median(rps) / wrk for rps, wrk in pairs if rps and wrk > 0]
    return statistics.median(ratios) if ratios else None


def point_verdict(
    limits: list[str], pairs: Sequence[tuple[Sequence[float], float]], noise: float, tool: str = "wrk"
) -> tuple[str, str]:
    """A closed-model point's limit over its repeats' verdicts (`limits`), checked against the referee (`tool`: wrk, or
    h2load on an h2c cell): `pairs` holds, per referee run, Locust's repeats as they would have been under it and its
    RPS; `noise` is the noise of their ratio (one standard deviation, as a fraction)."""
    cpu = worst(limits)
    ratio = referee_ratio(pairs)
    if ratio is None:
        return cpu, f"{cpu}: decided on CPU alone (no referee)"
    margin = max(1 - REFEREE_SHARE, 2 * noise)
    if len(pairs) == 1:
        ((rps, wrk),) = pairs
        said = f"Locust's median {statistics.median(rps):,.0f} RPS in {tool}'s round = {ratio:.2f}× {tool}'s {wrk:,.0f}"
    else:
        runs = ", ".join(f"{wrk:,.0f}" for _, wrk in pairs)
        said = f"Locust's median in {tool}'s {len(pairs)} rounds = {ratio:.2f}× {tool}'s (median of {runs} RPS)"
    if ratio >= REFEREE_SHARE:
        return cpu, f"{cpu}: {said}; repeats: {', '.join(limits)}"
    if cpu == "client":
        return "client", f"client: {said}, and a repeat's load side was out of CPU"
    if ratio < 1 - margin:
        beyond = f"short of {tool} by more than the noise ({margin:.0%})"
        return "client", f"client: {said}, {beyond}: the server can do more"
    return "unclear", f"unclear: {said}; short of {tool}, but within the noise ({margin:.0%})"


def worst(limits: list[str]) -> Limit:
    """A point's verdict over its repeats: client if any repeat was, else unclear if any was, else the rest."""
    for limit in ("client", "unclear", "server"):
        if limit in limits:
            return limit  # type: ignore[return-value]
    return "offered"
