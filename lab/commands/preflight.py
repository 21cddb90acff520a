"""python -m lab preflight: everything `run` checks, and the compose lab's ports, before any container starts."""

from __future__ import annotations

import argparse

from core.errors import say
from core.host import LOOPBACK, check_port_free, format_cpus
from lab.commands.run import prepare
from servers.matrix import Matrix

SERVICE_PORTS = {7900: "the target agent's port", 8089: "Locust's web UI port", 5557: "the Locust master's port"}


def preflight_main(args: argparse.Namespace, matrix: Matrix) -> int:
    """python -m lab preflight: everything `run` checks, and the compose lab's ports, before any container starts."""
    config, matrix, run_dir, _ = prepare(args, matrix)
    for port, what in {**SERVICE_PORTS, **dict.fromkeys(config.ports, "the servers' port")}.items():
        check_port_free(LOOPBACK, port, what, f"stop what holds it (`ss -ltnp 'sport = :{port}'` shows which)")
    if config.two_hosts:  # the target host's agent is up already: both hosts checked side by side
        from lab.run import hosts
        from lab.run.backends import open_targets

        targets = open_targets(config, matrix, args.results / "logs")  # an agent's: no log is written here
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
