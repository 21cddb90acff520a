"""The compose stack's gate: a second's pause between the preflight's exit and the services' start, which compose's
own stop cannot break (python -m core.gate).

With `docker compose up --exit-code-from lab` (or --abort-on-container-exit) compose stops the whole stack, once,
when the first container exits. That is the preflight, at the start: compose then stops every container in reverse
dependency order while, in parallel, its dependency poll (every 0.5 s) starts whatever the preflight's exit let
start. Containers not started yet are untouched by that stop; one started in between gets SIGTERM, and the run
fails with "dependency failed to start: container ...-locust-master-1 exited (143)" (1 in 16 runs of a small
stack built to show it). The target and the master therefore wait for this gate, not for the preflight: compose
stops the gate only after them, and the gate ends with 0 either way — after PAUSE, or at once on that SIGTERM — so
nothing it lets start can meet compose's stop.

It runs as the container's PID 1 (no init): until its handler is set, the kernel does not deliver SIGTERM to it at
all, so there is no moment in which SIGTERM would end it with 143.
"""

from __future__ import annotations

import signal
import sys
import time

PAUSE = 1.0  # seconds: far longer than compose's stop takes to pass the containers that wait for the gate


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(PAUSE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
