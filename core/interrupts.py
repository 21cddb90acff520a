"""Ctrl-C and SIGTERM as an exception, raised at a safe point.

A run turns both signals into an exception so that it can record where it stopped. Raised in the middle of starting
or stopping a child process, that exception would leave the child running with nobody to stop it (the server still
listening after the run has exited): inside `held()` the signal waits, and is raised as the block ends.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_held = 0  # how many held() blocks are open (signal handlers run in the main thread, between bytecodes)
_pending: list[int] = []  # signals that arrived inside one


@contextlib.contextmanager
def raising(error: Callable[[str], BaseException]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `error(signal name)`, outside any held() block."""

    def handler(signum: int, frame: Any) -> None:
        if _held:
            _pending.append(signum)
            return
        raise error(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        _pending.clear()
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Start or stop a child process here: a signal that arrives meanwhile is raised when the block ends."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending:
            signum = _pending[0]
            _pending.clear()
            signal.raise_signal(signum)  # the handler runs now, outside the block, and raises
