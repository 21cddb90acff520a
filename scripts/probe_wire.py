"""Benchmark: what one request costs in syscalls, wake-ups, CPU and TCP segments, on each side, under the lab's
client and under wrk, on the same server in one run.

For each cell (server pinned to the first CPU, the clients to the others), the same closed-model load twice — wrk,
then the lab's Locust client — counted over the whole load: per request, the server's and the client's syscalls
(perf's raw_syscalls tracepoint, counted in the kernel; none without perf), their context switches (each a sleep
and a wake-up), their CPU µs, and the TCP segments sent on loopback (/proc/net/snmp: both directions, ACKs too).
What differs between the two clients on one server is the client's doing; what differs between servers under one
client is the server's. (The lab's counts span its Locust run's start and stop, its requests only the measured
window: its per-request figures read a few percent high.)

    python scripts/probe_wire.py [--cell KEY ...] [--scenario plaintext] [--users 64] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from core.host import free_port, plan_cpus
from loadtests.load import Load
from loadtests.local import LocalLocust
from servers.local import LocalTargets
from servers.matrix import load

CELLS = ["granian-uvloop-hyper-w1-raw", "uvicorn-uvloop-httptools-w1-raw", "uvicorn-uvloop-httptools-w1-starlette"]


@dataclass
class Counts:
    cpu: float = 0.0  # seconds
    switches: int = 0
    syscalls: int | None = None


def tcp_out_segments() -> int:
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("OutSegs")])


def counts(pids: list[int]) -> Counts:
    """CPU seconds and context switches so far of every thread of these processes."""
    found = Counts()
    for pid in pids:
        proc = psutil.Process(pid)
        found.cpu += sum(proc.cpu_times()[:2])
        switched = proc.num_ctx_switches()
        found.switches += switched.voluntary + switched.involuntary
    return found


def perf_syscalls(pids: list[int], seconds: float | None, into: dict, key: str) -> None:
    """Syscalls of these processes (for `seconds`, or until they exit), counted by perf in the kernel."""
    if not shutil.which("perf"):
        return
    argv = ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", ",".join(map(str, pids))]
    done = subprocess.run([*argv, *(["--", "sleep", str(seconds)] if seconds else [])], capture_output=True, text=True)
    for line in done.stderr.splitlines():
        if "raw_syscalls:sys_enter" in line and line.split(",")[0].isdigit():
            into[key] = int(line.split(",")[0])


def server_tree(pid: int) -> list[int]:
    root = psutil.Process(pid)
    return [root.pid, *(child.pid for child in root.children(recursive=True))]


def row(cell: str, client: str, requests: int, seconds: float, segments: int, server: Counts, client_c: Counts) -> str:
    def per(value: float | None, scale: float = 1.0) -> str:
        return f"{value * scale / requests:.2f}" if value is not None and requests else "-"

    return (
        f"{cell:<40}{client:<6}{requests / seconds:>9,.0f}{per(segments):>9}{per(server.syscalls):>9}"
        f"{per(server.switches):>8}{per(server.cpu, 1e6):>8}{per(client_c.syscalls):>9}{per(client_c.switches):>8}"
        f"{per(client_c.cpu, 1e6):>8}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", action="append", default=[])
    parser.add_argument("--scenario", default="plaintext")
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    matrix = load()
    cpus = plan_cpus(None, None, None)  # the lab's own defaults: the server on the first CPU, the load on the rest
    server_cpus, load_cpus = cpus.server, cpus.load
    workdir = Path(tempfile.mkdtemp(prefix="lab-probe-"))
    wrk = shutil.which("wrk")
    seconds = round(args.seconds)
    print(
        f"per request: closed model, {args.users} connections, {seconds} s each; server CPUs {list(server_cpus)}, "
        f"clients on {list(load_cpus)}; syscalls {'from perf' if shutil.which('perf') else 'not counted: no perf'}"
    )
    print(f"{'cell':<40}{'client':<6}{'RPS':>9}{'segments':>9}{'srv sys':>9}{'srv cs':>8}{'srv µs':>8}"
          f"{'cli sys':>9}{'cli cs':>8}{'cli µs':>8}")  # fmt: skip
    with LocalLocust(load_cpus, 1, workdir / "load") as loads:
        loads.start()
        workers = [p.pid for p in loads.processes if "--worker" in p.args]  # type: ignore[operator]
        for key in args.cell or CELLS:
            cell = matrix.cell_from_key(key)
            with LocalTargets(workdir, server_cpus).serve(cell, free_port()) as server:
                pids = server_tree(server.process.pid)
                path = server.url + matrix.scenario(args.scenario).path
                if wrk:  # wrk: counted over its whole life (its own CPU and switches from the kernel's accounting)
                    perf: dict = {}
                    segments, server_before = tcp_out_segments(), counts(pids)
                    children = resource.getrusage(resource.RUSAGE_CHILDREN)
                    proc = subprocess.Popen(
                        [wrk, "-t1", f"-c{args.users}", f"-d{seconds}s", path], stdout=subprocess.PIPE, text=True,
                        preexec_fn=lambda: os.sched_setaffinity(0, load_cpus),
                    )  # fmt: skip
                    threads = [
                        threading.Thread(target=perf_syscalls, args=(pids, seconds, perf, "server")),
                        threading.Thread(target=perf_syscalls, args=([proc.pid], None, perf, "client")),
                    ]
                    for t in threads:
                        t.start()
                    out = proc.communicate()[0]
                    for t in threads:
                        t.join()
                    used = resource.getrusage(resource.RUSAGE_CHILDREN)
                    client = Counts(
                        used.ru_utime + used.ru_stime - children.ru_utime - children.ru_stime,
                        used.ru_nvcsw + used.ru_nivcsw - children.ru_nvcsw - children.ru_nivcsw,
                        perf.get("client"),
                    )
                    server_after = counts(pids)
                    srv = Counts(server_after.cpu - server_before.cpu, server_after.switches - server_before.switches,
                                 perf.get("server"))  # fmt: skip
                    requests = int(re.search(r"(\d+) requests in", out).group(1))
                    print(row(key, "wrk", requests, seconds, tcp_out_segments() - segments, srv, client))
                # the lab's client: its persistent worker, counted from just before its run to just after
                perf = {}
                segments, server_before, client_before = tcp_out_segments(), counts(pids), counts(workers)
                threads = [
                    threading.Thread(target=perf_syscalls, args=(pids, seconds, perf, "server")),
                    threading.Thread(target=perf_syscalls, args=(workers, seconds, perf, "client")),
                ]
                for t in threads:
                    t.start()
                result = loads.run(Load(target=server.url, scenario=args.scenario, users=args.users, duration=seconds))
                for t in threads:
                    t.join()
                server_after, client_after = counts(pids), counts(workers)
                srv = Counts(server_after.cpu - server_before.cpu, server_after.switches - server_before.switches,
                             perf.get("server"))  # fmt: skip
                cli = Counts(client_after.cpu - client_before.cpu, client_after.switches - client_before.switches,
                             perf.get("client"))  # fmt: skip
                print(row(key, "lab", result.ok, seconds, tcp_out_segments() - segments, srv, cli))
    return 0


if __name__ == "__main__":
    sys.exit(main())
