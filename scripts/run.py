"""Run a preset or a list of cells and write a result bundle: python -m scripts.run --preset quick

Exit code: 0 when every cell ran, 1 when something failed (recorded in the bundle), 2 for bad input (nothing
started), 130 when interrupted (resume with --resume RUN_ID).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from loadtests import run as loadrun
from loadtests.remote import RemoteLocust
from loadtests.run import USER_CLASSES, parse_cpus
from scripts import runner
from servers.agent import call, remote_serve
from servers.matrix import MatrixError, load
from servers.process import ServerError, serve


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    matrix = load()
    parser = argparse.ArgumentParser(prog="python -m scripts.run", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", help=f"one of: {', '.join(matrix.presets)} (default: default, unless --cell)")
    parser.add_argument("--cell", action="append", default=[], metavar="KEY", help="a cell key; repeatable")
    parser.add_argument(
        "--scenario", action="append", default=[], help=f"repeatable; one of: {', '.join(matrix.scenarios)}"
    )
    parser.add_argument("--repeats", type=int, help="measured repeats per cell x scenario (preset's default)")
    parser.add_argument("--duration", type=float, help="measured seconds per repeat (preset's default)")
    parser.add_argument("--warmup", type=float, help="unrecorded seconds before the repeats (preset's default)")
    parser.add_argument("--users", type=int, help="concurrent connections (preset's default)")
    parser.add_argument("--processes", type=int, default=1, help="Locust worker processes (default 1)")
    parser.add_argument(
        "--rate", type=float, action="append", default=[], help="open model: offered requests/s; repeatable for a sweep"
    )
    parser.add_argument("--client", default="lean", choices=tuple(USER_CLASSES))
    parser.add_argument("--server-cpus", default="0", help="CPU set for the server (default 0)")
    parser.add_argument("--load-cpus", default="1", help="CPU set for the load generator (default 1)")
    parser.add_argument("--port", type=int, default=8000, help="server port on 127.0.0.1 (default 8000)")
    parser.add_argument("--results", type=Path, default=runner.DEFAULT_RESULTS, help="where bundles go")
    parser.add_argument("--no-calibrate", action="store_true", help="skip measuring the load generator's ceiling")
    parser.add_argument(
        "--allow-shared-cpus",
        action="store_true",
        default=os.environ.get("LAB_ALLOW_SHARED_CPUS") == "1",
        help="let server and load generator share CPUs (recorded, and warned about in the report)",
    )
    parser.add_argument("--resume", metavar="RUN_ID", help="continue that run in --results, skipping finished work")
    remote = parser.add_argument_group("containers (docker-compose.yml): servers and Locust in their own containers")
    remote.add_argument("--server-agent", metavar="URL", help="run cells under this agent (python -m servers.agent)")
    remote.add_argument("--locust-master", metavar="URL", help="drive this long-lived Locust master (its web UI)")
    remote.add_argument("--locust-workers", type=int, default=1, help="workers the master must have before a run")
    remote.add_argument("--shutdown-services", action="store_true", help="at the end, stop the agent and master")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    serve_fn = remote_serve(args.server_agent) if args.server_agent else serve
    load_fn = RemoteLocust(args.locust_master, args.locust_workers) if args.locust_master else loadrun.run
    try:
        if args.resume:
            run_dir = args.results / args.resume
            if not (run_dir / "manifest.json").exists():
                raise MatrixError(f"no run {args.resume!r} in {args.results}")
            root, code = runner.resume(run_dir, serve_fn, load_fn)
        else:
            root, code = runner.start(plan_from(args), args.results, serve_fn, load_fn)
    except MatrixError as exc:
        print(f"asgi-bench-lab: error: {exc}", file=sys.stderr)
        code, root = 2, None
    finally:
        if args.shutdown_services:
            shutdown(args)
    if root:
        print(f"asgi-bench-lab: results in {root}", file=sys.stderr)
    return code


def shutdown(args: argparse.Namespace) -> None:
    """End the compose services this run used, so that `docker compose up` ends by itself."""
    if args.locust_master:
        RemoteLocust(args.locust_master).quit()
    if args.server_agent:
        with contextlib.suppress(ServerError):
            call(args.server_agent, "POST", "/shutdown")


def plan_from(args: argparse.Namespace) -> runner.Plan:
    matrix = load()
    preset = matrix.preset(args.preset or ("default" if not args.cell else "quick"))
    cells = tuple(matrix.cell_from_key(k) for k in args.cell) if args.cell else preset.cells
    settings = preset.run
    return runner.Plan(
        cells=cells,
        scenarios=tuple(args.scenario) or preset.scenarios,
        repeats=args.repeats or settings.repeats,
        duration=args.duration or settings.duration,
        warmup=settings.warmup if args.warmup is None else args.warmup,
        users=args.users or settings.users,
        processes=args.processes,
        rates=tuple(args.rate) or (0.0,),
        client=args.client,
        server_cpus=parse_cpus(args.server_cpus) or (),
        load_cpus=parse_cpus(args.load_cpus) or (),
        port=args.port,
        calibrate=not args.no_calibrate,
        preset=None if args.cell else preset.name,
        matrix=matrix,
        local_cpus=not (args.server_agent or args.locust_master),
        allow_shared_cpus=args.allow_shared_cpus,
    )


if __name__ == "__main__":
    sys.exit(main())
