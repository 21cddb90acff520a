"""The raw app with one fault, timed from its first request (the launcher's readiness check, where there is one):
`dies` kills its own process (as kill -9 would) and `hangs` freezes it (as SIGSTOP does), each FAULT_AFTER seconds
after it, for the reliability suite; `stalls` answers nothing for its first STALL seconds, then everything at once
(a server, or a machine, that stalls while a run warms up), for the open model's window.

For the stop test (lab/lifecycle.py): `deaf` ignores SIGTERM from its lifespan startup on (the server never stops by
itself), `stuck` hangs in its lifespan shutdown once it has noted its start, and `drops` starts every /io answer
and then fails, so the server closes the connection halfway."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from apps import common
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


def deaf_app() -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # after the server installed its handlers
        await raw(scope, receive, send)

    return app


async def stuck(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        return await raw(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"].update(common.on_startup("raw"))
            await send({"type": "lifespan.startup.complete"})
        else:
            common.note("raw", "shutdown-begin")
            await asyncio.Event().wait()  # never set: the shutdown never completes


async def drops(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/io":
        headers = [(b"content-length", b"13"), (b"content-type", common.TEXT_TYPE.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"Hello", "more_body": True})
        raise RuntimeError("dropped halfway through the answer")
    await raw(scope, receive, send)


deaf = deaf_app()
