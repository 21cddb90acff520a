"""python -m lab run|plot|compare|calibrate|reference: the lab's one command line.

    python -m lab run --preset quick                     run a preset (or --cell ...) and write a result bundle
    python -m lab plot results/<run-id>                  redo summary.csv, the charts, report.html and summary.md
    python -m lab compare results/<A> results/<B>        the same cells in two bundles, side by side
    python -m lab calibrate                              the load generator's ceiling on this machine
    python -m lab reference results/<run-id> NAME        copy a bundle into results/reference/ for committing
    python -m lab preflight [run options]                check a run's settings and ports; start nothing

`run` exits 0 when every cell ran, 1 when something failed or a service was lost (recorded in the bundle), 2 for
bad input (nothing started, nothing written), 130 when interrupted (resume with --resume RUN_ID, or --resume last).
Whatever happens, its last lines say how it ended: the headline and where the results are, or the error and its fix.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from core.host import LOOPBACK, UsageError, check_port_free, format_cpus, machine_cpus, plan_cpus
from core.settings import settings
from lab import runner
from lab.bundle import BundleError, Manifest, read_model
from lab.config import RunConfig
from loadtests.load import USER_CLASSES, LoadBackend, LoadError
from servers.matrix import MatrixError, load
from servers.target import ServerError, TargetBackend

PREFIX = "asgi-bench-lab:"


def add_run(
    sub: argparse._SubParsersAction, name: str = "run", purpose: str = "run a preset or cells and write a result bundle"
) -> None:
    matrix = load()
    run = sub.add_parser(name, help=purpose)
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
    run.add_argument("--load-workers", help="Locust worker processes (default: one per load CPU)")
    run.add_argument("--client", default="lean", choices=tuple(USER_CLASSES))
    run.add_argument("--server-cpus", help="CPU set for the server (default 0)")
    run.add_argument("--load-cpus", help="CPU set for the load generator (default: every CPU but the server's)")
    run.add_argument("--port", type=int, help="server port on 127.0.0.1 (default 8000; with --resume, the run's)")
    run.add_argument("--results", type=Path, default=runner.DEFAULT_RESULTS, help="where bundles go")
    run.add_argument("--no-calibrate", action="store_true", help="skip measuring the load generator's ceiling")
    run.add_argument(
        "--allow-shared-cpus",
        action="store_true",
        help="let server and load generator share CPUs (recorded, and warned about in the report); "
        "LAB_ALLOW_SHARED_CPUS=1 does the same",
    )
    run.add_argument(
        "--resume", metavar="RUN_ID", help="continue that run in --results (or `last`: the newest unfinished one)"
    )
    remote = run.add_argument_group("containers (docker-compose.yml): servers and Locust in their own containers")
    remote.add_argument("--server-agent", metavar="URL", help="run cells under this agent (python -m servers.agent)")
    remote.add_argument("--locust-master", metavar="URL", help="drive this long-lived Locust master (its web UI)")
    remote.add_argument("--shutdown-services", action="store_true", help="at the end, stop the agent and master")


def config_from(args: argparse.Namespace) -> RunConfig:
    """The run's configuration: the preset's values, then the command line's, then the environment's."""
    matrix = load()
    preset = matrix.preset(args.preset or ("default" if not args.cell else "quick"))
    cells = [matrix.cell_from_key(k).key for k in args.cell] if args.cell else [c.key for c in preset.cells]
    run = preset.run
    env = settings()
    cpus = plan_cpus(
        args.server_cpus or env.server_cpus, args.load_cpus or env.load_cpus, args.load_workers or env.locust_workers
    )

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
        server_cpus=list(cpus.server),
        load_cpus=list(cpus.load),
        load_workers=cpus.workers,
        port=8000 if args.port is None else args.port,
        calibrate=not args.no_calibrate,
        allow_shared_cpus=args.allow_shared_cpus or settings().allow_shared_cpus,
        target_agent=args.server_agent,
        locust_master=args.locust_master,
    ).check()  # type: ignore[arg-type]


def find_run(results: Path, wanted: str) -> Path:
    """The run to resume: by id, or `last`, the newest one not complete."""
    if wanted == "last":
        unfinished = []
        for manifest in sorted(results.glob("*/manifest.json")):
            try:
                if read_model(manifest, "manifest").status != "complete":
                    unfinished.append(manifest.parent)
            except BundleError:
                continue
        if not unfinished:
            raise UsageError(f"--resume last: no unfinished run in {results}; give a run id (a folder there)")
        return unfinished[-1]
    run_dir = results / wanted
    if "/" in wanted or not (run_dir / "manifest.json").exists():
        raise UsageError(f"--resume {wanted!r}: no such run in {results}; give one of its folders' names, or last")
    return run_dir


def prepare(args: argparse.Namespace) -> tuple[RunConfig, Path | None, Manifest | None]:
    """The run's configuration (new, or the resumed run's own), checked with everything around it."""
    if args.resume:
        run_dir = find_run(args.results, args.resume)
        manifest = read_model(run_dir / "manifest.json", "manifest")
        config = manifest.config
        if args.port is not None:  # the run's own port may be taken now (say, by a server its dead runner left)
            config = config.model_copy(update={"port": args.port})
        config = config.check()
    else:
        config, run_dir, manifest = config_from(args), None, None
    check_open_files(config)
    if not config.target_agent:
        check_port_free(LOOPBACK, config.port, "server port")
    runner.check_writable(args.results)
    return config, run_dir, manifest


def check_open_files(config: RunConfig) -> None:
    """Every connection is a file on both sides: refuse what the process limit cannot hold."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need = config.users // config.load_workers + 100
    if soft != resource.RLIM_INFINITY and need > soft:
        most = max((soft - 100) * config.load_workers, 1)
        raise UsageError(
            f"--users {config.users}: each of {config.load_workers} Locust worker(s) would open about {need} files, "
            f"over this machine's limit of {soft} (ulimit -n); give --users {most} or fewer, or raise the limit"
        )


def run_main(args: argparse.Namespace) -> int:
    from lab.backends import open_backends

    targets: TargetBackend | None = None
    loads: LoadBackend | None = None
    root: Path | None = None
    final: list[str] = []
    try:
        config, run_dir, manifest = prepare(args)
        # The runner samples and polls all run long: it keeps to the load CPUs, off the server's.
        os.sched_setaffinity(0, set(config.load_cpus) & set(machine_cpus()) or set(machine_cpus()))
        if run_dir is None:
            run_dir = runner.new_run_dir(args.results)
            try:
                targets, loads = open_backends(config, run_dir / "logs")
            except BaseException:
                run_dir.rmdir()  # still empty: a refused run leaves nothing behind
                raise
        else:
            targets, loads = open_backends(config, run_dir / "logs")
        with runner.holding(run_dir):
            if manifest is not None:
                root, code = runner.resume(run_dir, manifest, targets, loads)
            else:
                root, code = runner.start_in(run_dir, config, targets, loads)
        final = outcome(root, code, args)
    except (MatrixError, UsageError, BundleError, ValueError) as exc:
        final, code = [f"{PREFIX} error: {exc}"], 2
    except (ServerError, LoadError) as exc:
        final, code = [f"{PREFIX} error: {str(exc).splitlines()[0]}"], 2
    finally:
        # Ending the services may make compose (`up --exit-code-from lab`) stop this container too: the run is over
        # by now, and its last lines must still be printed, so SIGTERM waits for them.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if args.shutdown_services:
            shutdown(args, targets, loads)
        else:
            for backend in (loads, targets):
                if backend is not None and not (args.server_agent or args.locust_master):
                    backend.close()  # what this machine started: the local Locust master and workers
    for line in final:  # the last lines, after every other service has stopped
        print(line, file=sys.stderr, flush=True)
    return code


def outcome(root: Path, code: int, args: argparse.Namespace) -> list[str]:
    """What the run's last lines say: the headline and the results, or how to resume."""
    from lab import findings
    from lab.analysis import analyze
    from lab.bundle import load_bundle
    from servers.matrix import load

    bundle = load_bundle(root)
    lines = [f"{PREFIX} {line}" for line in findings.headline(analyze(bundle, load()))]
    resume = (
        f"RESUME={bundle.run_id} docker compose up"
        if args.server_agent
        else f"python -m lab run --resume {bundle.run_id}"
    )
    status = bundle.manifest.status
    host = settings().results_host  # in a container: where the results folder is on the host
    where = f"{host.rstrip('/')}/{root.name}" if host and root.parent == Path("/lab/results") else str(root)
    if status == "interrupted":
        lines.append(f"{PREFIX} interrupted; results so far in {where}; continue with: {resume}")
    elif status == "stopped":
        note = bundle.manifest.parts[-1].note
        lines.append(f"{PREFIX} stopped ({note}); results so far in {where}; once it is back: {resume}")
    else:
        failed = f"; {len(bundle.failures)} failure(s), see report.html" if bundle.failures else ""
        lines.append(f"{PREFIX} results in {where} (report.html, summary.md){failed}; exit {code}")
    return lines


def shutdown(args: argparse.Namespace, targets: TargetBackend | None, loads: LoadBackend | None) -> None:
    """End the compose services this run used, and wait until they are gone, so that `docker compose up` ends by
    itself with this run's lines last."""
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
    for url in (args.locust_master, args.server_agent):
        if url:
            wait_gone(url)


def wait_gone(url: str, timeout: float = 15.0) -> None:
    """Until nothing listens at the service's address any more (then a moment for compose to say it exited)."""
    import socket
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((parts.hostname or LOOPBACK, parts.port or 80)) != 0:
                time.sleep(1.0)
                return
        time.sleep(0.2)


def preflight_main(args: argparse.Namespace) -> int:
    """python -m lab preflight: everything `run` checks, and the compose lab's ports, before any container starts."""
    try:
        config, run_dir, _ = prepare(args)
        for port, what in ((7900, "the target agent's port"), (8089, "Locust's web UI port"),
                           (5557, "the Locust master's port"), (config.port, "the servers' port")):  # fmt: skip
            check_port_free(LOOPBACK, port, what, f"stop what holds it (`ss -ltnp 'sport = :{port}'` shows which)")
    except (MatrixError, UsageError, BundleError, ValueError) as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr, flush=True)
        return 2
    what = f"resume {run_dir.name}" if run_dir else f"preset {config.preset or 'cells'}"
    print(
        f"{PREFIX} preflight ok: {what}, {len(config.cells)} cells x {len(config.scenarios)} scenarios; server CPUs "
        f"{format_cpus(config.server_cpus)}, load CPUs {format_cpus(config.load_cpus)} with {config.load_workers} "
        "Locust worker(s)",
        file=sys.stderr,
        flush=True,
    )
    return 0


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
        cpus = plan_cpus(args.server_cpus, args.load_cpus, None)
        server_cpus, load_cpus = cpus.server, cpus.load
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


class Parser(argparse.ArgumentParser):
    """argparse with one line for bad input, naming the option, and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PREFIX} error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = Parser(prog="python -m lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    try:
        add_run(sub)  # their help names the matrix's presets and scenarios: a broken matrix stops here, in one line
        add_run(sub, "preflight", "check a run's settings, results folder and ports; start nothing")
    except MatrixError as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr)
        return 2
    plot = sub.add_parser("plot", help="redo a bundle's summary.csv, charts, report.html and summary.md")
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
    if args.command == "preflight":
        return preflight_main(args)
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
