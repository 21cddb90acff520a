"""The raw app with one fault, for the reliability suite: `dies` kills its own process (as kill -9 would) and `hangs`
freezes it (as SIGSTOP does), each FAULT_AFTER seconds after its first request (the launcher's readiness check)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from apps.raw_app import app as raw

FAULT_AFTER = 1.2  # seconds: inside the first repeat's window when it warms up for 0.3 s


def faulty(sig: signal.Signals) -> Any:
    first: list[float] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            now = time.monotonic()
            if not first:
                first.append(now)
            if now - first[0] >= FAULT_AFTER:
                os.kill(os.getpid(), sig)
        await raw(scope, receive, send)

    return app


dies = faulty(signal.SIGKILL)
hangs = faulty(signal.SIGSTOP)
