"""python -m lab run|preflight|calibrate|plot|compare|reference: the lab's one command line.

    python -m lab run --preset quick                     run a preset (or --cell ...) and write a result bundle
    python -m lab preflight [run options]                check a run's settings and ports; start nothing
    python -m lab calibrate [run options]                the load generator's ceiling on this machine
    python -m lab lifecycle --cell KEY [--stops N]       stop each cell's server under load N times (lab/lifecycle.py)
    python -m lab lifecycle --restart [--stops N]        restart each cell's server under load N times instead
    python -m lab plot results/<run-id>                  redo summary.csv, the charts, report.html and summary.md
    python -m lab compare results/<A> results/<B>        the same cells in two bundles, side by side
    python -m lab reference results/<run-id> NAME        copy a bundle into results/reference/ for committing

`run` exits 0 when every cell ran, 1 when something failed or a service was lost (recorded in the bundle), 2 for
bad input (nothing started, nothing written), 3 when --fail-if-slower's gate fails, 130 when interrupted (resume
with --resume RUN_ID, or --resume last).
Whatever happens, its last lines say how it ended: the headline and where the results are, or the error and its fix.
The lab's own errors are one line each (core/errors.py); anything else is a bug and shows its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from core.errors import LabError, ServiceLostError, UsageError, say
from core.host import LOOPBACK, check_port_free, format_cpus, machine_cpus
from core.settings import settings
from lab import config as options
from lab.analysis.analyze import Analysis
from lab.bundle import Manifest, read_model
from lab.config import RunConfig
from lab.run.ledger import DEFAULT_RESULTS, check_writable, find_run, holding, new_run_dir
from loadtests.load import LoadBackend
from servers.matrix import Cell, Matrix, load
from servers.target import TargetBackend
from servers.variants import Environment
from servers.variants import check as check_variants

GATE_EXIT = 3  # --fail-if-slower: B measured slower than A by more than the given %
SERVICE_PORTS = {7900: "the target agent's port", 8089: "Locust's web UI port", 5557: "the Locust master's port"}
LIFECYCLE_STOPS = 5  # python -m lab lifecycle without --stops: enough stops per cell to see if an outcome is stable


class Parser(argparse.ArgumentParser):
    """argparse with one line for bad input, naming the option, and exit 2."""

    def error(self, message: str) -> NoReturn:
        say(f"error: {message} (see {self.prog} --help)")
        self.exit(2)


def add_run(sub: argparse._SubParsersAction, name: str, purpose: str, matrix: Matrix) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=purpose)
    options.add_options(parser, matrix)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where bundles go")
    parser.add_argument(
        "--resume", metavar="RUN_ID", help="continue that run in --results (or `last`: the newest unfinished one)"
    )
    parser.add_argument("--shutdown-services", action="store_true", help="at the end, stop the agent and master")
    return parser


def prepare(args: argparse.Namespace, matrix: Matrix) -> tuple[RunConfig, Matrix, Path | None, Manifest | None]:
    """The run's configuration (new, or the resumed run's own, with the matrix it was planned from), checked with
    everything around it."""
    if args.resume:
        run_dir = find_run(args.results, args.resume)
        manifest = read_model(run_dir / "manifest.json", "manifest")
        config = manifest.config
        matrix = config.matrix_of(matrix)
        if args.port is not None:  # the run's own port may be taken now (say, by a server its dead runner left)
            config = config.model_copy(update={"port": args.port})
        config = config.check(matrix)
    else:
        config, run_dir, manifest = options.from_args(args, matrix), None, None
        if config.restart:
            raise UsageError("--restart: restarts under load are measured by `python -m lab lifecycle --restart`, "
                             "not in a run")  # fmt: skip
        matrix = config.matrix_of(matrix)  # with your app, when it runs one
        check_variants(config.variants)  # resolved, not installed: an unknown package stops here
        if config.own and not config.own.requirements and not config.variants:
            config.own.check_imports(sys.executable)  # else where it is installed, before the first cell
    if not config.target_agent:
        for port in config.ports:
            check_port_free(config.target_host, port, "server port")
    check_writable(args.results)
    return config, matrix, run_dir, manifest


def run_main(args: argparse.Namespace, matrix: Matrix) -> int:
    from lab.run.backends import open_backends
    from lab.run.runner import Runner

    targets: TargetBackend | None = None
    loads: LoadBackend | None = None
    final: list[str] = []
    try:
        config, matrix, run_dir, manifest = prepare(args, matrix)
        # The runner samples and polls all run long: it keeps to the load CPUs, off the server's.
        os.sched_setaffinity(0, set(config.load_cpus) & set(machine_cpus()) or set(machine_cpus()))
        if run_dir is None:
            run_dir = new_run_dir(args.results)
            try:
                targets, loads = open_backends(config, matrix, run_dir / "logs")
                environments = installed(config, targets)
            except BaseException:
                run_dir.rmdir()  # still empty: a refused run leaves nothing behind
                raise
        else:
            targets, loads = open_backends(config, matrix, run_dir / "logs")
            environments = installed(config, targets)
        with holding(run_dir):
            runner = Runner(config, matrix, run_dir, targets, loads, environments=environments)
            code = runner.run(manifest)
        final = outcome(run_dir, code, args, runner.analysis)
        gate = config.fail_if_slower
        if gate is not None and code == 0 and runner.analysis is not None and runner.analysis.slower(gate):
            code = GATE_EXIT
            final.append(f"exit {GATE_EXIT}: B is slower than A by more than {gate:g}% with 95% confidence (above)")
    except LabError as exc:
        final, code = [exc.line()], exc.exit_code
    finally:
        # Ending the services may make compose (`up --exit-code-from lab`) stop this container too: the run is over
        # by now, and its last lines must still be printed, so SIGTERM waits for them.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if args.shutdown_services:
            shutdown(args, targets, loads)
        else:
            for backend in (loads, targets):
                if backend is not None and not (args.target_agent or args.locust_master):
                    backend.close()  # what this machine started: the local Locust master and workers
            if targets is not None:
                targets.release()  # an agent that stays: the next run may drive it
    for line in final:  # the last lines, after every other service has stopped
        say(line)
    return code


def installed(config: RunConfig, targets: TargetBackend) -> list[Environment]:
    """The run's variants installed on the target side (from its cache when they were before), said in one line."""
    if not config.variants and not config.own:
        return []
    found = targets.prepare(config.variants, config.own)
    if not found:
        return []
    say(
        "variants: "
        + "; ".join(
            f"{e.variant} = {', '.join(f'{k} {v}' for k, v in e.own.items()) or 'the image'}"
            + (f" (installed in {e.install_seconds:.1f} s)" if not e.cached else "")
            for e in found
        )
    )
    return found


def outcome(root: Path, code: int, args: argparse.Namespace, analysis: Analysis | None) -> list[str]:
    """What the run's last lines say: the headline and the results, or how to resume."""
    from lab.analysis.analyze import analyze
    from lab.bundle import load_bundle
    from lab.report import findings

    analysis = analysis or analyze(load_bundle(root), load())
    lines = list(findings.headline(analysis))
    resume = (
        f"RESUME={analysis.run_id} docker compose up"
        if args.target_agent
        else f"python -m lab run --resume {analysis.run_id}"
    )
    status = analysis.manifest.status
    host = settings().results_host  # in a container: where the results folder is on the host
    where = f"{host.rstrip('/')}/{root.name}" if host and root.parent == Path("/lab/results") else str(root)
    if status == "interrupted":
        lines.append(f"interrupted; results so far in {where}; continue with: {resume}")
    elif status == "stopped":
        note = analysis.manifest.parts[-1].note
        lines.append(f"stopped ({note}); results so far in {where}; once it is back: {resume}")
    else:
        failed = f"; {len(analysis.failures)} failure(s), see report.html" if analysis.failures else ""
        lines.append(f"results in {where} (report.html, summary.md){failed}; exit {code}")
    return lines


def shutdown(args: argparse.Namespace, targets: TargetBackend | None, loads: LoadBackend | None) -> None:
    """End the compose services this run used, and wait until they are gone, so that `docker compose up` ends by
    itself with this run's lines last."""
    from loadtests.remote import MasterLocust
    from servers.remote import AgentTargets

    try:
        for name in ("locust_master", "target_agent"):
            options.check_bound(options.options()[name], getattr(args, name))
    except UsageError:
        return  # a service named by something that is no URL: nothing there to end (the run's error says why)
    if loads is None and args.locust_master:
        try:
            loads = MasterLocust(args.locust_master)
        except ServiceLostError:
            loads = None
    if targets is None and args.target_agent:
        try:
            targets = AgentTargets(args.target_agent)
        except LabError:  # gone, or it will not take this side's secret: nothing this run can end there
            targets = None
    for backend in (loads, targets):
        if backend is not None:
            backend.close()
    for url in (args.locust_master, args.target_agent):
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


def preflight_main(args: argparse.Namespace, matrix: Matrix) -> int:
    """python -m lab preflight: everything `run` checks, and the compose lab's ports, before any container starts."""
    config, matrix, run_dir, _ = prepare(args, matrix)
    for port, what in {**SERVICE_PORTS, **dict.fromkeys(config.ports, "the servers' port")}.items():
        check_port_free(LOOPBACK, port, what, f"stop what holds it (`ss -ltnp 'sport = :{port}'` shows which)")
    if config.two_hosts:  # the target host's agent is up already: both hosts checked side by side
        from lab.run import hosts
        from servers.remote import AgentTargets

        assert config.target_agent is not None
        targets = AgentTargets(config.target_agent, matrix, host=config.target_host)
        try:
            for note in hosts.both(config, targets)[1]:
                say(f"preflight: hosts: {note}")
        finally:
            targets.release()
    what = f"resume {run_dir.name}" if run_dir else f"preset {config.preset or 'cells'}"
    say(
        f"preflight ok: {what}, {len(config.cells)} cells x {len(config.scenarios)} scenarios; server CPUs "
        f"{format_cpus(config.server_cpus)}, load CPUs {format_cpus(config.load_cpus)} with {config.load_workers} "
        "Locust worker(s)"
    )
    return 0


def calibrate_main(args: argparse.Namespace, matrix: Matrix) -> int:
    """python -m lab calibrate: the calibration phase of a run alone (the run options' values), on this machine,
    printed as JSON."""
    from core.host import atomic_write
    from lab.measure.repeat import Measure
    from lab.run.calibration import calibrate
    from loadtests.local import LocalLocust
    from servers.local import LocalTargets

    assert matrix.calibration is not None
    cell, scenario = matrix.calibration
    config = options.from_args(args, matrix)
    config = config.model_copy(update={"cells": [cell], "scenarios": args.scenarios or [scenario]}).check(matrix)
    check_port_free(LOOPBACK, config.port, "server port")
    workdir = Path(args.workdir)
    targets = LocalTargets(workdir, tuple(config.server_cpus), matrix=matrix)
    with LocalLocust(tuple(config.load_cpus), config.load_workers, workdir / "load") as loads:
        measure = Measure(config, matrix, "calibration", loads, tuple(config.server_cpus), targets)
        record = calibrate(config, matrix, targets, loads, measure, say)
    text = (record.model_dump_json(indent=1) if record else "null") + "\n"
    if args.out:
        atomic_write(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def lifecycle_main(args: argparse.Namespace, matrix: Matrix) -> int:
    """python -m lab lifecycle: the stop phase of a run alone (the run options' cells, port, CPUs, --stops,
    --graceful), on this machine or through the target agent; its records, lifecycle.md and the timeline chart in
    --out (a folder of stop records, not a whole bundle)."""
    import time

    from lab import bundle
    from lab.lifecycle.stops import StopPlan, http1_cells, stop_once
    from lab.report.stops import outcome_line, table, write_outputs
    from servers.local import LocalTargets
    from servers.remote import AgentTargets

    config = options.from_args(args, matrix)
    stops = LIFECYCLE_STOPS if args.stops is None else config.stops  # --stops 0 is a count too: none
    if not stops:
        say(f"--stops 0: no {'restarts' if config.restart else 'stops'} asked for; nothing started, nothing written")
        return 0
    out = args.out or args.results / f"lifecycle-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    if not config.target_agent:
        check_port_free(LOOPBACK, config.port, "server port")
    os.sched_setaffinity(0, set(config.load_cpus) & set(machine_cpus()) or set(machine_cpus()))
    targets: TargetBackend = (
        AgentTargets(config.target_agent, matrix)
        if config.target_agent
        else LocalTargets(out / "logs", tuple(config.server_cpus), matrix=matrix)
    )
    cells = http1_cells(config.cells, matrix)
    if skipped := [c.key for c in config.cells if c not in cells]:
        say(f"not stopped (the stop test speaks HTTP/1.1; their servers are, on their HTTP/1.1 cells): {skipped}")
    if config.restart:
        return restarts(config, matrix, targets, cells, stops, out)
    say(f"stops under load: {len(cells)} cells x {stops}, {StopPlan().describe()}; results in {out}")
    records, failed = each_test(cells, stops, "stop", lambda cell, n: (
        stop_once(targets, matrix, cell, config.port, n, out.name, config.graceful),
        bundle.stop_path(out, cell.key, config.graceful, n),
    ), outcome_line)  # fmt: skip
    if records:
        write_outputs(out, records)
        for line in table(records):
            print(line)
    return 1 if failed else 0


def each_test(cells: list[Cell], count: int, what: str, test: Callable[[Cell, int], tuple[Any, Path]],
              line: Callable[[Any], str]) -> tuple[list[Any], int]:  # fmt: skip
    """Each cell `count` times, cells interleaved: each test's record written where `test` says and its line said;
    a test that fails (the server's fault, or its broken connections: OSError) is said and counted."""
    from lab import bundle
    from servers.target import ServerError

    records, failed = [], 0
    for number in range(1, count + 1):
        for cell in cells:
            try:
                record, path = test(cell, number)
            except (ServerError, OSError) as exc:
                say(f"FAILED {cell.key} {what} {number}: {type(exc).__name__}: {exc}")
                failed += 1
                continue
            bundle.write_record(path, record)
            records.append(record)
            say(line(record))
    return records, failed


def restarts(
    config: RunConfig, matrix: Matrix, targets: TargetBackend, given: list[Cell], count: int, out: Path
) -> int:
    """python -m lab lifecycle --restart: each cell restarted under load `count` times (lab/lifecycle.py)."""
    from lab import bundle
    from lab.lifecycle.stops import RestartPlan, restart_cell, restart_once
    from lab.report.stops import restart_line, restart_table, write_restart_outputs

    cells = [restart_cell(c, matrix) for c in given]
    for cell in cells:  # a cell with more workers than the preset's: refused before any starts, as every input is
        matrix.valid(cell)
    say(f"restarts under load: {len(cells)} cells x {count}, {RestartPlan().describe()}; results in {out}")
    records, failed = each_test(cells, count, "restart", lambda cell, n: (
        restart_once(targets, matrix, cell, config.port, n, out.name, config.graceful),
        bundle.restart_path(out, cell.key, config.graceful, n),
    ), restart_line)  # fmt: skip
    if records:
        write_restart_outputs(out, records)
        for line in restart_table(records):
            print(line)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    try:
        return dispatch(argv)
    except LabError as exc:
        say(exc.line())
        return exc.exit_code


def dispatch(argv: list[str] | None) -> int:
    matrix = load()  # the options' help names its presets and scenarios: a broken matrix stops here, in one line
    parser = Parser(prog="python -m lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_run(sub, "run", "run a preset or cells and write a result bundle", matrix)
    add_run(sub, "preflight", "check a run's settings, results folder and ports; start nothing", matrix)
    cal = add_run(sub, "calibrate", "the load generator's ceiling against the matrix's calibration cell", matrix)
    cal.add_argument("--workdir", default=tempfile.gettempdir() + "/lab-calibrate", help="server and Locust logs")
    cal.add_argument("--out", type=Path, help="write the calibration JSON here (default: stdout)")
    life = add_run(sub, "lifecycle", "stop (or --restart) each cell's server under load; what became of every request",
                   matrix)  # fmt: skip
    life.add_argument("--out", type=Path, help="the folder for its records (default: RESULTS/lifecycle-<time>)")
    plot = sub.add_parser("plot", help="redo a bundle's summary.csv, charts, report.html and summary.md")
    plot.add_argument("bundle", type=Path, help="a results/<run-id> directory")
    compare = sub.add_parser("compare", help="compare two bundles (e.g. the same preset on two machines)")
    compare.add_argument("a", type=Path, help="bundle A (the baseline)")
    compare.add_argument("b", type=Path, help="bundle B")
    compare.add_argument("--out", type=Path, help="default: <parent of A>/compare-<A>-vs-<B>")
    ref = sub.add_parser("reference", help="copy a bundle into results/reference/<machine-id>/NAME for committing")
    ref.add_argument("run", type=Path, help="results/<run-id>")
    ref.add_argument("name", help="e.g. default-server-cpu0-load-cpu1")
    args = parser.parse_args(argv)

    if args.command == "run":
        return run_main(args, matrix)
    if args.command == "preflight":
        return preflight_main(args, matrix)
    if args.command == "calibrate":
        return calibrate_main(args, matrix)
    if args.command == "lifecycle":
        return lifecycle_main(args, matrix)
    from lab.report import compare as compare_module
    from lab.report import reference

    if args.command == "plot":
        from lab.report import pages as report

        return report.plot(args.bundle)
    if args.command == "compare":
        return compare_module.main(args.a, args.b, args.out)
    return reference.main(args.run, args.name)
