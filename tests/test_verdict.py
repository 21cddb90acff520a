"""What limited a measurement, decided from recorded figures: every state, every rule, with its reason."""

from __future__ import annotations

import pytest

from lab.verdict import judge as judge_repeat
from lab.verdict import point_verdict, worst
from loadtests.load import LoadGenerator, LoadResult, RefereeResult, Window
from servers.target import ServerSample
from tests.synthetic import histogram_of


def result(rps: float = 20_000, workers: tuple[float, ...] = (0.5,), cpus: dict[str, float] | None = None,
           offered: float | None = None, shortfall: bool | None = None) -> LoadResult:  # fmt: skip
    generator = LoadGenerator(
        cpus=[1], processes=len(workers), client="LeanUser", cpu_seconds=sum(workers) * 5,
        worker_utilization=list(workers), cpu_busy=cpus or {"1": max(workers)}, cpu_steal={"1": 0.0},
        cpu_irq={"1": 0.05}, master_utilization=None,
    )  # fmt: skip
    return LoadResult(
        scenario="plaintext", params={}, client="LeanUser", model="open" if offered else "closed", users=64,
        offered_rps=offered, arrivals="poisson" if offered else None, rate_shortfall=shortfall,
        window=Window(start=0.0, end=5.0, seconds=5.0), requests=int(rps * 5), ok=int(rps * 5), errors={}, rps=rps,
        per_second=[int(rps)] * 5, latency=histogram_of([100] * 10), send_lateness=None, scheduled=0, owed=0,
        peak_connections=64, processes=len(workers), per_process_ok=[int(rps * 5 / len(workers))] * len(workers),
        load_generator=generator,
    )  # fmt: skip


def server(busy: float) -> ServerSample:
    return ServerSample(
        cpu_seconds=busy * 5, cpu_cores=busy, rss_peak_bytes=None, processes=1, cpus_busy_seconds=busy * 5,
        cpus_busy={"0": busy}, cpus_steal={"0": 0.0}, cpus_irq={"0": 0.05},
    )  # fmt: skip


def referee(rps: float, cpu: float = 0.5) -> RefereeResult:
    return RefereeResult(rps=rps, non_2xx=0, socket_errors=0, threads=1, seconds=2.0, cpu_utilization=cpu,
                         cpu_busy={"1": cpu}, argv=["wrk"])  # fmt: skip


@pytest.mark.parametrize(
    ("load", "server_busy", "wrk", "limit", "said"),
    [
        (result(workers=(0.5,)), 0.99, referee(20_500), "server", "the server's CPUs were saturated"),
        (result(workers=(0.95,)), 0.6, referee(20_500), "client", "the load generator was out of CPU"),
        (result(workers=(0.95,)), 0.97, referee(20_500), "unclear", "both the load generator and the server"),
        (result(workers=(0.4,)), 0.3, None, "server", "neither side was out of CPU"),
        (result(workers=(0.5,)), 0.5, referee(20_500, cpu=0.97), "unclear", "wrk was out of CPU"),
    ],
)
def test_each_state_of_a_repeat(load: LoadResult, server_busy: float, wrk, limit: str, said: str) -> None:
    verdict = judge_repeat(load, server(server_busy), wrk)
    assert verdict.limit == limit and said in verdict.reason


def test_the_busiest_worker_decides_not_the_mean() -> None:
    """Two workers, one saturated: their mean (0.6) hides it; the rule sees it."""
    verdict = judge_repeat(result(workers=(0.95, 0.25), cpus={"1": 0.7, "2": 0.3}), server(0.5), None)
    assert verdict.limit == "client" and verdict.busiest_worker == 0.95


def test_the_busiest_cpu_decides_not_the_mean() -> None:
    """A neighbour saturates one load CPU of two: the workers are fine, but their CPU was not theirs."""
    verdict = judge_repeat(result(workers=(0.5, 0.5), cpus={"1": 0.96, "2": 0.5}), server(0.5), None)
    assert verdict.limit == "client" and verdict.busiest_load_cpu == 0.96


def test_an_open_model_repeat_that_served_its_rate_was_limited_by_the_offer() -> None:
    assert judge_repeat(result(offered=5000, shortfall=False), server(0.2), None).limit == "offered"
    assert judge_repeat(result(offered=5000, shortfall=True), server(0.99), None).limit == "server"


@pytest.mark.parametrize(
    ("lab", "wrk", "busy", "ceiling", "limit"),
    [
        (20_000, 20_000 / 0.95, 0.5, None, "server"),  # 0.95x wrk: within the band, the repeats' verdict stands
        (20_000, 20_000 / 0.84, 0.9, None, "client"),  # 0.84x, its busiest CPU at 90%: the client was the limit
        (20_000, 20_000 / 0.84, 0.5, None, "unclear"),  # 0.84x with half its CPU idle: not the client's limit
        (20_000, 20_000 / 0.60, 0.5, 21_000.0, "client"),  # 0.60x at 95% of its calibrated ceiling: at its limit
        (20_000, 20_000 / 0.60, 0.5, 80_000.0, "unclear"),  # 0.60x far below its ceiling, CPU to spare: unclear
    ],
)
def test_a_point_is_checked_against_the_referee_and_the_clients_own_evidence(
    lab: float, wrk: float, busy: float, ceiling: float | None, limit: str
) -> None:
    found, reason = point_verdict(["server", "server", "server"], [(lab, wrk)], busy, ceiling)
    assert found == limit, reason
    assert f"Locust {lab:,.0f} RPS" in reason


def test_the_median_over_wrks_runs_is_judged_not_one_run() -> None:
    """One wrk run in a slow spell (beside a repeat at 1.5x it) does not make the point look short of wrk."""
    found, reason = point_verdict(["server"] * 3, [(20_000, 13_333), (19_800, 20_000), (20_100, 20_300)], 0.5, None)
    assert found == "server" and "0.99× wrk's" in reason, reason


def test_an_h2c_point_names_its_referee_h2load() -> None:
    found, reason = point_verdict(["server"] * 3, [(14_600, 17_350)], 0.5, None, "h2load")
    assert found == "unclear" and "0.84× h2load's 17,350" in reason and "the client had room" in reason, reason
    assert "wrk" not in reason


def test_a_short_point_whose_load_side_ran_out_of_cpu_is_client() -> None:
    found, reason = point_verdict(["server", "client", "server"], [(17_400, 20_000)], 0.3, None)
    assert found == "client" and "out of CPU" in reason, reason


def test_without_a_referee_a_point_is_decided_on_cpu_and_says_so() -> None:
    assert point_verdict(["server", "client"], [], 0.3, None) == (
        "client",
        "client: decided on CPU alone (no referee)",
    )


def test_the_worst_repeat_decides_a_point() -> None:
    assert worst(["server", "unclear", "server"]) == "unclear"
    assert worst(["unclear", "client"]) == "client"
    assert worst(["offered", "offered"]) == "offered"


def test_with_wrk_in_several_rounds_the_median_of_their_ratios_is_judged() -> None:
    """One wrk run in a slow spell (15,000) neither passes nor fails a point the other two place at 0.98x."""
    found, reason = point_verdict(["server"] * 3, [(20_000, 15_000), (20_000, 20_600), (20_000, 20_400)], 0.3, None)
    assert found == "server" and "wrk's 3 rounds = 0.98×" in reason, reason
    found, reason = point_verdict(["server"] * 3, [(20_000, 25_000), (20_000, 24_000), (20_000, 19_000)], 0.9, None)
    assert found == "client" and "= 0.83×" in reason, reason  # two of three runs short, the client at its limit
