"""The load generator: every answer checked, precise merged latency, the client's own limit detected, bounded runs."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from core.errors import UsageError
from core.host import ROOT, free_port, machine_cpus
from lab.verdict import judge
from loadtests import flock, recorder, scenarios
from loadtests.load import Load, LoadResult
from loadtests.local import LOCUSTFILE, run_once
from servers.local import LocalTargets
from servers.matrix import MatrixError, load
from servers.target import ServerSample

MATRIX = load()
QUIET_SERVER = ServerSample(
    cpu_seconds=0.2, cpu_cores=0.1, rss_peak_bytes=None, processes=1, cpus_busy_seconds=0.2, cpus_busy={"0": 0.1},
    cpus_steal={"0": 0.0}, cpus_irq={"0": 0.01},
)  # fmt: skip
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
SERVER_CPUS, CLIENT_CPUS = (0,), (1,)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The calibration cell (the fastest), pinned to CPU 0."""
    cell, _ = MATRIX.calibration
    targets = LocalTargets(tmp_path_factory.mktemp("server"), SERVER_CPUS if TWO_CPUS else machine_cpus())
    with targets.serve(cell, free_port()) as s:
        yield s.url


@contextlib.contextmanager
def uvicorn(app: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "test server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def quick(target: str, processes: int = 1, cpus: tuple[int, ...] | None = None, **kwargs) -> LoadResult:
    spec = {"users": 4, "duration": 1.5, **kwargs}
    return run_once(Load(target=target, **spec), cpus or machine_cpus(), processes)


# --- every response is checked ----------------------------------------------------------------------------------


def test_a_wrong_body_is_an_error_not_throughput() -> None:
    with uvicorn("tests.broken_app:app") as url:
        result = quick(url, scenario="plaintext")
    assert result.ok == 0 and result.rps == 0
    assert result.errors == {"wrong body (13 bytes, expected 13)": result.requests} and result.requests > 0
    assert result.latency.count == 0


def test_a_wrong_status_is_an_error() -> None:
    with uvicorn("tests.broken_app:app") as url:
        result = quick(url, scenario="json")
    assert set(result.errors) == {"status 500"} and result.ok == 0


def test_the_right_body_with_the_wrong_headers_is_an_error() -> None:
    with uvicorn("tests.broken_app:app") as url:
        html = quick(url, scenario="io")
        framed = quick(url, scenario="stream")
    assert set(html.errors) == {"content-type text/html; charset=utf-8"} and html.ok == 0
    assert set(framed.errors) == {"framing length, expected chunked"} and framed.ok == 0


@pytest.mark.parametrize("client", ["lean", "stock"])
def test_every_scenario_runs_clean_against_a_real_server(server: str, client: str) -> None:
    for name, scenario in MATRIX.scenarios.items():
        if client == "stock" and scenario.method == "WS":
            continue
        result = quick(server, scenario=name, client=client, duration=1.0)
        assert result.errors == {}, (name, result.errors)
        assert result.ok > 10, name
        p = result.latency.percentiles_us
        assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= result.latency.max_us, name


def test_scenario_parameters_reach_the_server(server: str) -> None:
    result = quick(server, scenario="io", params={"ms": "30"}, users=2)
    assert result.latency.percentiles_us["p50"] >= 30_000
    assert result.params == {"ms": 30}


# --- precise latency ------------------------------------------------------------------------------------------------


def test_merged_histograms_give_the_known_percentiles() -> None:
    """1..10000 µs once each, split over three recorders: every percentile is known exactly (to HDR's 0.1%)."""
    parts = [recorder.Recorder() for _ in range(3)]
    for r in parts:
        r.open()
    for us in range(1, 10_001):
        parts[us % 3].success(us / 1_000_000)
    histogram, late, errors = recorder.merge(r.snapshot() for r in parts)
    summary = recorder.latency_summary(histogram)
    assert summary.count == 10_000 and errors == {} and late.get_total_count() == 0
    for name, expected in {"p50": 5000, "p90": 9000, "p99": 9900, "p99.9": 9990}.items():
        assert summary.percentiles_us[name] == pytest.approx(expected, rel=0.001), name
    assert summary.max_us == pytest.approx(10_000, rel=0.001)
    assert HdrHistogram.decode(summary.hdr.encode()).get_total_count() == 10_000
    curve = summary.curve_us
    assert [p for p, _ in curve] == sorted(p for p, _ in curve) and curve[-1][0] == 100.0


def test_sub_millisecond_latency_keeps_microseconds() -> None:
    r = recorder.Recorder()
    r.open()
    for _ in range(100):
        r.success(0.000_137)
    summary = recorder.latency_summary(r.flush())
    assert summary.percentiles_us["p50"] == 137


def test_nothing_is_recorded_outside_the_window() -> None:
    r = recorder.Recorder()
    r.success(0.001)
    r.open()
    r.success(0.002)
    r.failure("status 500")
    r.close()
    r.success(0.003)
    r.failure("status 500")
    assert r.snapshot().ok == 1 and r.errors == {"status 500": 1}


# --- the client's own ceiling ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs to separate server and client")
def test_a_starved_client_is_judged_client_limited(server: str) -> None:
    hog = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, time\nos.sched_setaffinity(0, {1})\nend = time.time() + 30\nwhile time.time() < end: pass",
        ]
    )
    try:
        time.sleep(0.2)
        result = quick(server, users=32, duration=2, cpus=CLIENT_CPUS)
    finally:
        hog.kill()
        hog.wait()
    assert result.load_generator.busiest_cpu >= 0.9  # the neighbour counts: the CPU was not the client's to use
    verdict = judge(result, QUIET_SERVER, None)
    assert verdict.limit == "client" and "load generator was out of CPU" in verdict.reason


@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs to separate server and client")
def test_a_server_limited_run_is_not_client_limited(server: str) -> None:
    result = quick(server, scenario="io", params={"ms": "50"}, users=4, duration=2, cpus=CLIENT_CPUS)
    assert result.load_generator.busiest_worker < 0.5
    assert judge(result, QUIET_SERVER, None).limit == "server"  # the answer time (50 ms) set the pace
    assert result.rps == pytest.approx(4 / 0.05, rel=0.25)


# --- a group load: an A/B pair (lab/measure/pair.py), or more servers ------------------------------------------------


def test_a_paired_load_checks_and_counts_each_server_apart(server: str) -> None:
    """A right and a wrong server loaded together from two worker processes: each side's answers, errors and buckets
    are its own, and the buckets of the epoch merge across processes."""
    with uvicorn("tests.broken_app:app") as wrong:
        result = quick(server, processes=2, scenario="plaintext", group=[wrong], duration=1.5, slice_seconds=0.1)
    pair = result.pair
    assert pair is not None and pair.mode == "together" and pair.a.target == server and pair.b.target == wrong
    assert pair.a.ok > 0 and pair.a.errors == {} and pair.a.ok == pair.a.latency.count
    assert pair.b.ok == 0 and set(pair.b.errors) == {"wrong body (13 bytes, expected 13)"} and not any(pair.b.buckets)
    assert result.ok == pair.a.ok and result.errors == pair.b.errors  # the load's figures are both sides' together
    assert 10 <= len(pair.a.buckets) <= 15 and 0 < sum(pair.a.buckets) <= pair.a.ok
    assert min(pair.a.buckets) > 0  # every bucket inside the window had answers from both processes


def test_slices_load_one_server_at_a_time(server: str) -> None:
    result = quick(server, users=8, group=[server], pair_mode="slices", slice_seconds=0.2, settle_seconds=0.04)
    pair = result.pair
    assert pair is not None and pair.mode == "slices" and pair.counted_seconds() == pytest.approx(0.16)
    turns = [(pair.first + k) % 2 for k in range(len(pair.a.buckets))]
    assert all(n > 0 for n, turn in zip(pair.a.buckets, turns, strict=True) if turn == 0)
    assert all(n == 0 for n, turn in zip(pair.a.buckets, turns, strict=True) if turn == 1)
    assert all(n > 0 for n, turn in zip(pair.b.buckets, turns, strict=True) if turn == 1)
    assert all(n == 0 for n, turn in zip(pair.b.buckets, turns, strict=True) if turn == 0)


def test_a_group_of_three_servers_counts_each_apart(server: str) -> None:
    """Three servers loaded together from two worker processes, `users` connections each: every side's answers,
    errors and buckets are its own, in the load's order, and the load's figures are theirs together."""
    with uvicorn("tests.broken_app:app") as wrong, uvicorn("apps.raw_app:app") as third:
        result = quick(server, processes=2, users=4, group=[wrong, third], duration=1.5, slice_seconds=0.1)
    group = result.group
    assert group is not None and result.pair is None and [s.target for s in group.sides] == [server, wrong, third]
    first, broken, last = group.sides
    for side in (first, last):
        assert side.ok > 0 and side.errors == {} and side.ok == side.latency.count and side.http == "h1"
        assert 10 <= len(side.buckets) <= 15 and min(side.buckets) > 0 and sum(side.buckets) <= side.ok
    assert broken.ok == 0 and set(broken.errors) == {"wrong body (13 bytes, expected 13)"} and not any(broken.buckets)
    assert result.ok == first.ok + last.ok and result.errors == broken.errors
    assert result.peak_connections == 3 * 4  # users connections to each of the three


def test_a_groups_users_go_to_each_server_in_turn_across_processes() -> None:
    """However many worker processes share a group's users (Locust gives each an even share, the first ones one
    more), each server gets `users` connections."""
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    urls = [f"http://127.0.0.1:{listener.getsockname()[1]}" for listener in listeners]
    try:
        spec = Load(target=urls[0], group=urls[1:], users=5)
        for processes in (1, 2, 3, 4):
            per_side: Counter[int] = Counter()
            share, extra = divmod(spec.connections, processes)
            for index in range(processes):
                sides = [flock.Side(scenarios.Target.parse(s.target), spec.plan(s.target), recorder.Recorder())
                         for s in spec.sides]  # fmt: skip
                first = flock.first_user(index, processes, spec.connections)
                client = flock.Flock(sides, lambda *a: None, group=flock.Group("together", 0.1, 0.0), first_user=first)
                for _ in range(share + (index < extra)):
                    client.join()
                per_side.update(conn.side for conn in client.conns.values())
                client.stop()
            assert per_side == {0: 5, 1: 5, 2: 5}, processes
    finally:
        for listener in listeners:
            listener.close()


def test_slices_take_turns_among_three_servers(server: str) -> None:
    result = quick(server, users=4, group=[server, server], pair_mode="slices", slice_seconds=0.2, settle_seconds=0.04)
    group = result.group
    assert group is not None and group.mode == "slices" and len(group.sides) == 3
    turns = [(group.first + k) % 3 for k in range(len(group.a.buckets))]
    for n, side in enumerate(group.sides):
        assert all(count > 0 for count, turn in zip(side.buckets, turns, strict=True) if turn == n), n
        assert all(count == 0 for count, turn in zip(side.buckets, turns, strict=True) if turn != n), n


@pytest.fixture(scope="module")
def h2c_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """granian over h2c only (--http 2: an HTTP/1.1 client is refused), pinned to CPU 0."""
    cell = MATRIX.cell("granian", "uvloop", "h2c", 1, "raw")
    targets = LocalTargets(tmp_path_factory.mktemp("h2c"), SERVER_CPUS if TWO_CPUS else machine_cpus())
    with targets.serve(cell, free_port()) as s:
        yield s.url


def test_an_http1_and_an_h2c_server_are_loaded_side_by_side(server: str, h2c_server: str) -> None:
    """A mixed group from one loop: HTTP/1.1 to the first server, h2c (4 streams per connection) to the second,
    each checked and counted in its own protocol."""
    result = quick(server, users=4, streams=4, group=[{"target": h2c_server, "http": "h2"}], duration=1.5)
    pair = result.pair
    assert pair is not None and (pair.a.http, pair.b.http) == ("h1", "h2") and result.http == "h1"
    for side in pair.sides:
        assert side.ok > 0 and side.errors == {} and min(side.buckets) > 0, side.target
    assert result.ok == pair.a.ok + pair.b.ok and result.errors == {}


# --- distributed ------------------------------------------------------------------------------------------------------


def test_master_with_two_worker_processes_merges_their_histograms(server: str) -> None:
    result = quick(server, users=8, processes=2, duration=2)
    per_process = result.per_process_ok
    assert result.processes == 2 and len(per_process) == 2 and min(per_process) > 0
    assert sum(per_process) == result.ok == result.latency.count
    assert HdrHistogram.decode(result.latency.hdr.encode()).get_total_count() == result.ok
    assert len(result.load_generator.worker_utilization) == 2


def test_workers_started_separately_join_the_master(server: str, tmp_path: Path) -> None:
    """As on two machines: a master, and workers that connect to it by host and port."""
    port, out = free_port(), tmp_path / "result.json"
    locust = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    master_args = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
    master_args += ["--expect-workers", "2", "--headless", "-u", "8", "-r", "100", "--host", server]
    master_args += ["--lab-duration", "2", "--lab-out", str(out)]
    worker_args = ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    quiet = {"cwd": ROOT, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    master = subprocess.Popen([*locust, *master_args, "LeanUser"], **quiet)
    workers = [subprocess.Popen([*locust, *worker_args, "LeanUser"], **quiet) for _ in range(2)]
    try:
        assert master.wait(timeout=60) == 0
        for w in workers:
            w.wait(timeout=30)
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
    result = LoadResult.model_validate_json(out.read_text())
    assert result.processes == 2 and min(result.per_process_ok) > 0 and result.errors == {}


# --- load models and bounds -----------------------------------------------------------------------------------------


def test_open_model_reaches_a_modest_offered_rate(server: str) -> None:
    result = quick(server, scenario="io", params={"ms": "1"}, users=8, rate=200, duration=2)
    assert result.model == "open" and result.offered_rps == 200
    assert result.rps == pytest.approx(200, rel=0.15)  # Poisson arrivals: 400 slots in the window, 5% (1 sd)
    assert result.ok >= 0.97 * result.scheduled and result.rate_shortfall is False  # every slot answered


def test_open_model_says_when_it_falls_short(server: str) -> None:
    result = quick(server, scenario="io", params={"ms": "20"}, users=2, max_connections=2, rate=1000, duration=1.5)
    assert result.rate_shortfall is True and result.rps < 200
    assert result.peak_connections == 2 and result.owed > 100  # past the bound, slots wait and are counted
    assert result.send_lateness.percentiles_us["p50"] > 100_000  # ...and their lateness is recorded


def test_open_model_opens_connections_beyond_the_users_when_all_are_busy(server: str) -> None:
    result = quick(server, scenario="io", params={"ms": "20"}, users=2, rate=400, duration=3.0)  # 1.5 s: once 469/s
    assert result.rate_shortfall is False and result.rps == pytest.approx(400, rel=0.15)
    assert result.peak_connections >= 6  # 400/s x 20 ms = 8 in flight on average, with 2 users
    assert result.latency.percentiles_us["p50"] == pytest.approx(20_000, rel=0.25)


def test_open_model_counts_the_windows_own_slots_not_a_backlog_from_before_it() -> None:
    """A server that holds every answer for its first 0.7 s, past the warm-up: the warm-up's slots, answered in a
    burst inside the window, are not the window's throughput (they once made 400/s offered read as ~470/s)."""
    with uvicorn("tests.fault_app:stalls") as url:
        result = quick(url, scenario="plaintext", users=2, rate=400, warmup=0.5, duration=3.0)
    assert 0.95 * result.scheduled <= result.ok <= result.scheduled  # the window's slots, answered; no others
    assert result.rps == pytest.approx(400, rel=0.12)  # Poisson arrivals: 1,200 slots in the window, 2.9% (1 sd)
    assert result.latency.percentiles_us["p99"] < 700_000  # the window's own slots waited at most 0.2 s of the stall


def test_a_silent_server_does_not_hang_the_run() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        started = time.monotonic()
        result = quick(f"http://127.0.0.1:{silent.getsockname()[1]}", duration=1.0)
    assert time.monotonic() - started < 1.0 + 20
    assert result.ok == 0 and result.rps == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "http://10.1.2.3:8000"}, "not a loopback address"),
        ({"target": "http://example.com"}, "not a loopback address"),
        ({"target": "https://127.0.0.1"}, "must look like"),
        ({"scenario": "nope"}, "unknown scenario 'nope'"),
        ({"scenario": "io", "params": {"seconds": "1"}}, "has no parameter ['seconds']; valid: ms"),
        ({"scenario": "io", "params": {"ms": "soon"}}, "must be a whole number"),
        ({"scenario": "echo", "params": {"body_bytes": str(2**21)}}, "outside the apps' range 0-1048576"),
        ({"scenario": "ws", "client": "stock"}, "no websocket support"),
        ({"client": "wrk"}, "unknown client 'wrk'"),
        ({"duration": 0}, "duration 0 must be in (0, 3600]"),
        ({"users": 0}, "must be in 1-"),
        ({"group": ["http://10.0.0.1:80"]}, "not a loopback address"),
        ({"group": ["http://127.0.0.1:2"], "pair_mode": "sideways"}, "give together or slices"),
        ({"group": ["http://127.0.0.1:2"], "rate": 100}, "a paired load runs the lean client's closed model"),
        ({"group": ["http://127.0.0.1:2"], "slice_seconds": 10}, "slice 10 s must be in [0.01, 5]"),
        ({"group": ["http://127.0.0.1:2"], "settle_seconds": 0.1}, "settle 0.1 s must be in [0, 0.1)"),
        ({"group": [{"target": "http://127.0.0.1:2", "http": "h3"}]}, "http 'h3': give h1 or h2"),
        ({"group": ["http://127.0.0.1:2"] * 16}, "a group load of 17 servers: give at most 16"),
        ({"group": ["http://127.0.0.1:2"], "users": 6000}, "users 6000 x 2 servers must be at most 10000"),
        ({"http": "h3"}, "http 'h3': give h1 or h2"),
        ({"streams": 4}, "streams above 1 need http h2"),
        ({"http": "h2", "streams": 0}, "streams 0 must be in 1-1000"),
        ({"http": "h2", "client": "stock"}, "an h2 load runs the lean client over HTTP"),
        ({"http": "h2", "scenario": "ws"}, "an h2 load runs the lean client over HTTP"),
        ({"group": [{"target": "http://127.0.0.1:2", "http": "h2"}], "scenario": "ws"}, "a paired load runs the lean"),
    ],
)
def test_bad_input_is_refused_before_anything_starts(kwargs: dict, message: str) -> None:
    with pytest.raises((MatrixError, UsageError)) as excinfo:
        Load(**{"target": "http://127.0.0.1:8000", **kwargs})
    assert message in str(excinfo.value)


def test_cpu_sets_are_checked_against_the_machine() -> None:
    from core.host import parse_cpus

    assert parse_cpus("0") == (0,)
    with pytest.raises(UsageError, match="does not offer"):
        parse_cpus("999")
    with pytest.raises(UsageError, match="is not like"):
        parse_cpus("one")


def test_websocket_frames_are_masked_as_a_client_must() -> None:
    frame = scenarios.ws_frame(b"hello")
    assert frame[0] == 0x82 and frame[1] == 0x80 | 5
    mask, payload = frame[2:6], frame[6:]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) == b"hello"
