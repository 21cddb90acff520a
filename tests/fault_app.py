"""The raw app with one fault, timed from its first request (the launcher's readiness check, where there is one):
`dies` kills its own process (as kill -9 would) and `hangs` freezes it (as SIGSTOP does), each FAULT_AFTER seconds
after it, for the reliability suite; `stalls` answers nothing for its first STALL seconds, then everything at once
(a server, or a machine, that stalls while a run warms up), for the open model's window."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from apps.raw_app import app as raw

FAULT_AFTER = 1.2  # seconds: inside the first repeat's window when it warms up for 0.3 s
STALL = 0.7  # seconds


class FirstRequest:
    """Seconds since the app's first HTTP request."""

    def __init__(self) -> None:
        self.at: float | None = None

    def since(self) -> float:
        now = time.monotonic()
        if self.at is None:
            self.at = now
        return now - self.at


def faulty(sig: signal.Signals) -> Any:
    first = FirstRequest()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and first.since() >= FAULT_AFTER:
            os.kill(os.getpid(), sig)
        await raw(scope, receive, send)

    return app


def stalled() -> Any:
    first = FirstRequest()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (left := STALL - first.since()) > 0:
            await asyncio.sleep(left)
        await raw(scope, receive, send)

    return app


dies = faulty(signal.SIGKILL)
hangs = faulty(signal.SIGSTOP)
stalls = stalled()
