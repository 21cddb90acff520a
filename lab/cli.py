"""python -m lab run|preflight|calibrate|plot|compare|reference: the lab's one command line.

    python -m lab run --preset quick                     run a preset (or --cell ...) and write a result bundle
    python -m lab preflight [run options]                check a run's settings and ports; start nothing
    python -m lab calibrate [run options]                the load generator's ceiling on this machine
    python -m lab lifecycle --cell KEY [--stops N]       stop each cell's server under load N times
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
import tempfile
from pathlib import Path
from typing import NoReturn

from core.errors import command, say
from lab import config as options
from lab.commands.calibrate import calibrate_main
from lab.commands.lifecycle import lifecycle_main
from lab.commands.preflight import preflight_main
from lab.commands.run import run_main
from lab.run.ledger import DEFAULT_RESULTS
from servers.matrix import Matrix, load


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


def main(argv: list[str] | None = None) -> int:
    return command(dispatch, argv)


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
    two = sub.add_parser("compare", help="compare two bundles (e.g. the same preset on two machines)")
    two.add_argument("a", type=Path, help="bundle A (the baseline)")
    two.add_argument("b", type=Path, help="bundle B")
    two.add_argument("--out", type=Path, help="default: <parent of A>/compare-<A>-vs-<B>")
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
    from lab.report import compare, outputs, reference

    if args.command == "plot":
        return outputs.plot(args.bundle)
    if args.command == "compare":
        return compare.main(args.a, args.b, args.out)
    return reference.main(args.run, args.name)
