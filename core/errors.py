"""The errors the lab expects, and how each ends a command: one base, so that the command line catches these and
nothing else (anything else is a bug, and shows its traceback).

    LabError              printed as one line after PREFIX; exit_code says how the command ends
      UsageError          bad input, found before anything started (exit 2): the text names the input and a fix
      ProcessFailedError  a child process (a server, Locust, wrk) failed; its log's tail rides along as a field
      ServiceLostError    a side of the lab is gone (the target agent, the Locust master, a worker): nothing later
                          can run, and the run stops where it is, to be resumed
"""

from __future__ import annotations

import sys
from collections.abc import Callable

PREFIX = "asgi-bench-lab:"


def say(text: str) -> None:
    """A line for the person at the terminal (stderr), after the lab's prefix."""
    print(f"{PREFIX} {text}", file=sys.stderr, flush=True)


class LabError(Exception):
    exit_code = 1

    def line(self) -> str:
        """What a user sees: the error in one line."""
        return f"error: {self}"


class UsageError(LabError):
    exit_code = 2


class ProcessFailedError(LabError):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail

    def line(self) -> str:
        tail = self.log_tail.strip()
        return f"failed: {self}" + (f"; its log ends:\n{tail[-2000:]}" if tail else "")


class ServiceLostError(LabError):
    pass


def command(run: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """A command's exit code: what `run(argv)` returns, or the lab's own error said in one line and its exit code."""
    try:
        return run(argv)
    except LabError as exc:
        say(exc.line())
        return exc.exit_code
