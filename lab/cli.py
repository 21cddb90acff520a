"""python -m lab run|plot|compare|calibrate|reference: the lab's one command line.

    python -m lab run --preset quick                     run a preset (or --cell ...) and write a result bundle
    python -m lab plot results/<run-id>                  redraw the charts, report.html and summary.md
    python -m lab compare results/<A> results/<B>        the same cells in two bundles, side by side
    python -m lab calibrate                              the load generator's ceiling on this machine
    python -m lab reference results/<run-id> NAME        copy a bundle into results/reference/ for committing

`run` exits 0 when every cell ran, 1 when something failed (recorded in the bundle), 2 for bad input (nothing
started, nothing written), 130 when interrupted (resume with --resume RUN_ID).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.host import LOOPBACK, UsageError, check_port_free, machine_cpus, parse_cpus
from core.settings import settings
from lab import runner
from lab.bundle import BundleError, read_model
from lab.config import RunConfig
from loadtests.load import USER_CLASSES, LoadBackend, LoadError
from servers.matrix import MatrixError, load
from servers.target import ServerError, TargetBackend

PREFIX = "asgi-bench-lab:"


def add_run(sub: argparse._SubParsersAction) -> None:
    matrix = load()
    run = sub.add_parser("run", help="run a preset or cells and write a result bundle")
    run.add_argument("--preset", help=f"one of: {', '.join(matrix.presets)} (default: default, unless --cell)")
    run.add_argument("--cell", action="append", default=[], metavar="KEY", help="a cell key; repeatable")
    run.add_argument(
        "--scenario", action="append", default=[], help=f"repeatable; one of: {', '.join(matrix.scenarios)}"
    )
    run.add_argument("--repeats", type=int, help="measured repeats per cell x scenario (preset's default)")
    run.add_argument("--duration", type=float, help="measured seconds per repeat (preset's default)")
    run.add_argument("--warmup", type=float, help="unrecorded seconds before each repeat (preset's default)")
    run.add_argument("--users", type=int, help="concurrent connections (preset's default)")
    run.add_argument("--referee-seconds", type=float, help="wrk's run per cell x scenario; 0 = none (preset's)")
    run.add_argument("--sweep-seconds", type=float, help="seconds per offered rate in the sweep; 0 = none (preset's)")
    run.add_argument(
        "--rate", type=float, action="append", default=[], help="the sweep's offered requests/s instead of the "
        "rates chosen from the run's figures; repeatable"
    )  # fmt: skip
    run.add_argument("--arrivals", default="poisson", choices=("poisson", "uniform"), help="the open model's arrivals")
    run.add_argument("--max-connections", type=int, help="open model: connections at most (default 4 x --users)")
    run.add_argument("--budget-minutes", type=float, help="time for the whole run, extra repeats included (preset's)")
    run.add_argument("--max-repeats", type=int, help="extra repeats stop here (preset's default)")
    run.add_argument("--load-workers", type=int, help="Locust worker processes (default: one per load CPU)")
    run.add_argument("--client", default="lean", choices=tuple(USER_CLASSES))
    run.add_argument("--server-cpus", default="0", help="CPU set for the server (default 0)")
    run.add_argument("--load-cpus", help="CPU set for the load generator (default: every CPU but the server's)")
    run.add_argument("--port", type=int, default=8000, help="server port on 127.0.0.1 (default 8000)")
    run.add_argument("--results", type=Path, default=runner.DEFAULT_RESULTS, help="where bundles go")
    run.add_argument("--no-calibrate", action="store_true", help="skip measuring the load generator's ceiling")
    run.add_argument(
        "--allow-shared-cpus",
        action="store_true",
        help="let server and load generator share CPUs (recorded, and warned about in the report); "
        "LAB_ALLOW_SHARED_CPUS=1 does the same",
    )
    run.add_argument("--resume", metavar="RUN_ID", help="continue that run in --results, skipping finished work")
    remote = run.add_argument_group("containers (docker-compose.yml): servers and Locust in their own containers")
    remote.add_argument("--server-agent", metavar="URL", help="run cells under this agent (python -m servers.agent)")
    remote.add_argument("--locust-master", metavar="URL", help="drive this long-lived Locust master (its web UI)")
    remote.add_argument("--shutdown-services", action="store_true", help="at the end, stop the agent and master")


def default_load_cpus(server_cpus: tuple[int, ...]) -> tuple[int, ...]:
    """Every CPU of this machine but the server's; on a one-CPU machine, that one."""
    return tuple(c for c in machine_cpus() if c not in server_cpus) or machine_cpus()


def config_from(args: argparse.Namespace) -> RunConfig:
    """The run's configuration: the preset's values, then the command line's, then the environment's."""
    matrix = load()
    preset = matrix.preset(args.preset or ("default" if not args.cell else "quick"))
    cells = [matrix.cell_from_key(k).key for k in args.cell] if args.cell else [c.key for c in preset.cells]
    run = preset.run
    server_cpus = parse_cpus(args.server_cpus, "--server-cpus")
    load_cpus = parse_cpus(args.load_cpus, "--load-cpus") if args.load_cpus else default_load_cpus(server_cpus)

    def given(value: object, default: object) -> object:
        return default if value is None else value

    return RunConfig(
        preset=None if args.cell else preset.name,
        cells=cells,
        scenarios=list(args.scenario) or list(preset.scenarios),
        repeats=given(args.repeats, run.repeats),
        duration=float(given(args.duration, run.duration)),  # type: ignore[arg-type]
        warmup=float(given(args.warmup, run.warmup)),  # type: ignore[arg-type]
        users=given(args.users, run.users),
        client=args.client,
        referee_seconds=float(given(args.referee_seconds, run.referee)),  # type: ignore[arg-type]
        rates=[float(r) for r in args.rate],
        sweep_seconds=float(given(args.sweep_seconds, run.sweep)),  # type: ignore[arg-type]
        arrivals=args.arrivals,
        max_connections=given(args.max_connections, 4 * given(args.users, run.users)),  # type: ignore[operator]
        budget_seconds=60 * float(given(args.budget_minutes, run.budget)),  # type: ignore[arg-type]
        max_repeats=given(args.max_repeats, max(run.max_repeats, given(args.repeats, run.repeats))),
        server_cpus=list(server_cpus),
        load_cpus=list(load_cpus),
        load_workers=given(args.load_workers, len(load_cpus)),
        port=args.port,
        calibrate=not args.no_calibrate,
        allow_shared_cpus=args.allow_shared_cpus or settings().allow_shared_cpus,
        target_agent=args.server_agent,
        locust_master=args.locust_master,
    ).check()  # type: ignore[arg-type]


def run_main(args: argparse.Namespace) -> int:
    from lab.backends import open_backends

    targets: TargetBackend | None = None
    loads: LoadBackend | None = None
    root = None
    try:
        if args.resume:
            run_dir = args.results / args.resume
            if not (run_dir / "manifest.json").exists():
                raise UsageError(f"no run {args.resume!r} in {args.results}; the run ids there are its folders")
            manifest = read_model(run_dir / "manifest.json", "manifest")
            config = manifest.config.check()
        else:
            config = config_from(args)
            run_dir = manifest = None
        if not config.target_agent:
            check_port_free(LOOPBACK, config.port, "server port")
        # The runner samples and polls all run long: it keeps to the load CPUs, off the server's.
        os.sched_setaffinity(0, set(config.load_cpus) & set(machine_cpus()) or set(machine_cpus()))
        if run_dir is None:
            runner.check_writable(args.results)
            run_dir = runner.new_run_dir(args.results)
            try:
                targets, loads = open_backends(config, run_dir / "logs")
            except BaseException:
                run_dir.rmdir()  # still empty: a refused run leaves nothing behind
                raise
        else:
            targets, loads = open_backends(config, run_dir / "logs")
        if manifest is not None:
            root, code = runner.resume(run_dir, manifest, targets, loads)
        else:
            root, code = runner.start_in(run_dir, config, targets, loads)
    except (MatrixError, UsageError, BundleError) as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr)
        code = 2
    except (ServerError, LoadError) as exc:
        print(f"{PREFIX} error: {str(exc).splitlines()[0]}", file=sys.stderr)
        code = 2
    finally:
        if args.shutdown_services:
            shutdown(args, targets, loads)
        else:
            for backend in (loads, targets):
                if backend is not None and not (args.server_agent or args.locust_master):
                    backend.close()  # what this machine started: the local Locust master and workers
    if root:
        print(f"{PREFIX} results in {root}", file=sys.stderr)
    return code


def shutdown(args: argparse.Namespace, targets: TargetBackend | None, loads: LoadBackend | None) -> None:
    """End the compose services this run used, so that `docker compose up` ends by itself."""
    from loadtests.remote import MasterLocust
    from servers.remote import AgentTargets

    if loads is None and args.locust_master:
        try:
            loads = MasterLocust(args.locust_master)
        except LoadError:
            loads = None
    if targets is None and args.server_agent:
        try:
            targets = AgentTargets(args.server_agent)
        except ServerError:
            targets = None
    for backend in (loads, targets):
        if backend is not None:
            backend.close()


def calibrate_main(args: argparse.Namespace) -> int:
    """python -m lab calibrate: the calibration phase of a run alone, on this machine, printed as JSON."""
    from core.host import atomic_write
    from lab.calibration import calibrate
    from lab.measure import Measure
    from loadtests.local import LocalLocust
    from servers.local import LocalTargets

    try:
        matrix = load()
        cell, scenario = matrix.calibration
        server_cpus = parse_cpus(args.server_cpus, "--server-cpus") if args.server_cpus else machine_cpus()[:1]
        load_cpus = parse_cpus(args.load_cpus, "--load-cpus") if args.load_cpus else default_load_cpus(server_cpus)
        config = RunConfig(
            preset=None, cells=[cell.key], scenarios=args.scenario or [scenario], repeats=1, duration=args.duration,
            warmup=args.warmup, users=args.users, client="lean", referee_seconds=args.referee_seconds, rates=[],
            sweep_seconds=0.0, arrivals="poisson", max_connections=4 * args.users, budget_seconds=0.0, max_repeats=1,
            server_cpus=list(server_cpus), load_cpus=list(load_cpus), load_workers=len(load_cpus), port=args.port,
            calibrate=True, allow_shared_cpus=settings().allow_shared_cpus, target_agent=None, locust_master=None,
        ).check()  # fmt: skip
        check_port_free(LOOPBACK, args.port, "server port")
    except (MatrixError, UsageError) as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir)
    targets = LocalTargets(workdir, server_cpus)
    try:
        with LocalLocust(load_cpus, len(load_cpus), workdir / "load") as loads:
            measure = Measure(config, "calibration", loads, server_cpus)
            record = calibrate(config, targets, loads, measure, lambda line: print(line, file=sys.stderr))
    except (ServerError, LoadError) as exc:
        print(f"{PREFIX} failed: {exc}", file=sys.stderr)
        return 1
    text = (record.model_dump_json(indent=1) if record else "null") + "\n"
    if args.out:
        atomic_write(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_run(sub)
    plot = sub.add_parser("plot", help="redraw a bundle's charts, report.html and summary.md")
    plot.add_argument("bundle", type=Path, help="a results/<run-id> directory")
    compare = sub.add_parser("compare", help="compare two bundles (e.g. the same preset on two machines)")
    compare.add_argument("a", type=Path, help="bundle A (the baseline)")
    compare.add_argument("b", type=Path, help="bundle B")
    compare.add_argument("--out", type=Path, help="default: <parent of A>/compare-<A>-vs-<B>")
    cal = sub.add_parser("calibrate", help="the load generator's ceiling against the matrix's calibration cell")
    cal.add_argument("--server-cpus", help="default: the first CPU")
    cal.add_argument("--load-cpus", help="default: the other CPUs")
    cal.add_argument("--scenario", action="append", default=[], help="repeatable (default: the matrix's)")
    cal.add_argument("--users", type=int, default=64)
    cal.add_argument("--duration", type=float, default=5.0)
    cal.add_argument("--warmup", type=float, default=1.0)
    cal.add_argument("--referee-seconds", type=float, default=3.0)
    cal.add_argument("--port", type=int, default=8000)
    cal.add_argument("--workdir", default=tempfile.gettempdir() + "/lab-calibrate", help="server and Locust logs")
    cal.add_argument("--out", type=Path, help="write the calibration JSON here (default: stdout)")
    ref = sub.add_parser("reference", help="copy a bundle into results/reference/<machine-id>/NAME for committing")
    ref.add_argument("run", type=Path, help="results/<run-id>")
    ref.add_argument("name", help="e.g. default-server-cpu0-load-cpu1")
    args = parser.parse_args(argv)

    if args.command == "run":
        return run_main(args)
    if args.command == "calibrate":
        return calibrate_main(args)
    from lab import compare as compare_module
    from lab import reference

    if args.command == "plot":
        from lab import charts

        return charts.main(args.bundle)
    if args.command == "compare":
        return compare_module.main(args.a, args.b, args.out)
    return reference.main(args.run, args.name)
