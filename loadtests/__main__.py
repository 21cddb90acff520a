"""python -m loadtests run|calibrate: one bounded load run, or the load generator's ceiling on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loadtests import scenarios
from loadtests.calibrate import calibrate
from loadtests.run import USER_CLASSES, Load, LoadError, parse_cpus, run
from servers.matrix import MatrixError, load
from servers.process import ServerError


def main(argv: list[str] | None = None) -> int:
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
    one.add_argument("--web-ui", action="store_true", help="keep Locust's UI on 127.0.0.1:8089 during the run")
    one.add_argument("--out", type=Path, help="write the result JSON here (default: stdout)")

    cal = sub.add_parser("calibrate", help="the load generator's ceiling against the matrix's calibration cell")
    cal.add_argument("--server-cpus", help="default: the first CPU")
    cal.add_argument("--load-cpus", help="default: the other CPUs")
    cal.add_argument("--users", type=int, default=64)
    cal.add_argument("--duration", type=float, default=10.0)
    cal.add_argument("--out", type=Path, help="write the calibration JSON here (default: stdout)")

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            spec = Load(
                target=args.target,
                scenario=args.scenario,
                params=scenarios.parse_overrides(args.param),
                users=args.users,
                duration=args.duration,
                rate=args.rate,
                processes=args.processes,
                cpus=parse_cpus(args.cpus),
                client=args.client,
                web_ui=args.web_ui,
            )
            result = run(spec)
        else:
            result = calibrate(parse_cpus(args.server_cpus), parse_cpus(args.load_cpus), args.users, args.duration)
    except MatrixError as exc:
        print(f"asgi-bench-lab: error: {exc}", file=sys.stderr)
        return 2
    except (LoadError, ServerError) as exc:
        print(f"asgi-bench-lab: failed: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=1) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
