"""python -m loadtests run: one bounded Locust load against a server already listening on loopback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import UsageError, command
from core.host import atomic_write, machine_cpus, parse_cpus
from loadtests import scenarios
from loadtests.load import USER_CLASSES, Load
from loadtests.local import run_once
from servers.matrix import load


def main(argv: list[str] | None = None) -> int:
    return command(run, argv)


def run(argv: list[str] | None) -> int:
    matrix = load()
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="one load run against a server already listening on loopback")
    one.add_argument("--target", required=True, help="e.g. http://127.0.0.1:8000 (loopback only)")
    one.add_argument("--scenario", default="plaintext", help=f"one of: {', '.join(matrix.scenarios)}")
    one.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="scenario parameter override")
    one.add_argument("--users", type=int, default=64, help="concurrent users (connections); default 64")
    one.add_argument("--duration", type=float, default=10.0, help="measured seconds; default 10")
    one.add_argument("--rate", type=float, default=0.0, help="open model: offered requests/s; default 0 = closed")
    one.add_argument("--processes", type=int, default=1, help="Locust worker processes; default 1")
    one.add_argument("--cpus", help="load-generator CPU set, e.g. 1 or 1-3; default: all")
    one.add_argument("--client", default="lean", choices=tuple(USER_CLASSES), help="lean (default) or stock")
    one.add_argument(
        "--group-target",
        action="append",
        default=[],
        metavar="URL",
        help="a group load: a further server (B, C, ...; --target is the first), over HTTP/1.1; repeat it",
    )
    one.add_argument("--pair-mode", default="together", help="a group load: together (default) or slices")
    one.add_argument("--slice", type=float, default=0.1, help="a group load: seconds per bucket or slice")
    one.add_argument("--out", type=Path, help="write the result JSON here (default: stdout)")
    args = parser.parse_args(argv)
    spec = Load(
        target=args.target,
        scenario=matrix.scenario(args.scenario),
        params=scenarios.parse_overrides(args.param),
        users=args.users,
        duration=args.duration,
        rate=args.rate,
        client=args.client,
        group=args.group_target,
        pair_mode=args.pair_mode,
        slice_seconds=args.slice,
    )
    if args.processes < 1:
        raise UsageError(f"--processes {args.processes} must be at least 1")
    cpus = parse_cpus(args.cpus, "--cpus") if args.cpus else machine_cpus()
    result = run_once(spec, cpus, args.processes)
    text = result.model_dump_json(indent=1) + "\n"
    if args.out:
        atomic_write(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
