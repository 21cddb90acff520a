"""uvicorn's own CLI, but a graceful stop on SIGTERM exits 0.

After shutting down, uvicorn restores the SIGTERM handler it found and raises the signal again, so with the default
handler a clean stop ends as "killed by SIGTERM" (-15, or 143 in a shell). The handler installed here is the one it
finds and restores. It leaves with os._exit rather than SystemExit because rloop swallows exceptions raised in its
callbacks, which would leave the process running after shutdown. A crash still exits non-zero.
"""

import os
import signal
import sys

from uvicorn.main import main


def exit_cleanly(signum: int, frame: object) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":  # uvicorn's worker processes are spawned and import this module again
    signal.signal(signal.SIGTERM, exit_cleanly)
    main()
