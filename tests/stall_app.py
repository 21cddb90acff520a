"""The raw app, stalled at first: every request that arrives in the STALL seconds after the first one is answered
only when they have passed (a server, or a machine, that stalls while a run warms up)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from apps.raw_app import app as raw

STALL = 0.7  # seconds

first: list[float] = []


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        now = time.monotonic()
        if not first:
            first.append(now)
        if now < first[0] + STALL:
            await asyncio.sleep(first[0] + STALL - now)
    await raw(scope, receive, send)
