"""Pin a compose service to its side's CPUs, then exec its command: python -m core.pin ROLE -- COMMAND...

    python -m core.pin server -- python -m servers.agent ...
    python -m core.pin load -- locust ... --processes {workers}

The CPU sets come from SERVER_CPUS, LOAD_CPUS and LOCUST_WORKERS with the lab's defaults (core.host.plan_cpus: the
server on CPU 0, the load generator on every other CPU, one Locust worker per load CPU), so every container and
the runner agree without anyone listing CPUs twice. `{workers}` in the command becomes the worker count. The
pinning is inherited by everything the command starts.
"""

from __future__ import annotations

import os
import sys

from core.errors import UsageError, say
from core.host import CPU_VARIABLES, format_cpus, plan_cpus
from core.settings import variable


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("server", "load") or argv[1] != "--":
        say("usage: python -m core.pin server|load -- COMMAND [ARGS...]")
        return 2
    role, command = argv[0], argv[2:]
    try:
        plan = plan_cpus(*(variable(name) for name in CPU_VARIABLES.values()))
    except UsageError as exc:
        say(exc.line())
        return exc.exit_code
    cpus = plan.server if role == "server" else plan.load
    os.sched_setaffinity(0, cpus)
    command = [part.replace("{workers}", str(plan.workers)) for part in command]
    say(f"{role} side on CPUs {format_cpus(cpus)}")
    os.execvp(command[0], command)
    return 127  # unreachable


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
