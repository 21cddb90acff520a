"""What the three apps share: response bytes, limits, query rules and lifespan work.

Nothing here imports a framework. Every app serializes and builds its responses per request; only the inputs
(texts, limits) are shared, so no app gets a pre-built response the others lack.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

PLAINTEXT = "Hello, World!"
MESSAGE = "Hello, World!"

MAX_BODY = 1024 * 1024  # /echo answers 413 above this many bytes
IO_MAX_MS = 10_000
STREAM_MAX_CHUNKS = 1_000
STREAM_MAX_SIZE = 64 * 1024
STREAM_BYTE = b"x"

TEXT_TYPE = "text/plain; charset=utf-8"
JSON_TYPE = "application/json"
OCTET_TYPE = "application/octet-stream"

# Error bodies are spelled out rather than taken from http.HTTPStatus, whose phrases change between Pythons.
ERRORS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
}

# Starlette answers HEAD on every GET route; the other two apps are told to do the same.
GET = ("GET", "HEAD")

PLAIN_DIGITS = re.compile(r"[0-9]{1,6}")  # what a numeric query value may be: no sign, space, dot or exponent

Sleep = Callable[[float], Awaitable[Any]]


def dumps(content: Any) -> bytes:
    """JSON exactly as Starlette's JSONResponse renders it."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def parse_bounded_int(value: str | None, low: int, high: int) -> int | None:
    """An integer of plain ASCII digits within [low, high], or None for anything else (missing, signs, spaces)."""
    if value is None or not PLAIN_DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if low <= number <= high else None


def running_loop_info() -> dict[str, Any]:
    """Which async library and event loop answered this request (for checking a server ran the loop asked for)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return {"async_library": "trio", "loop": "trio", "pid": os.getpid()}
    cls = type(loop)
    return {"async_library": "asyncio", "loop": f"{cls.__module__}.{cls.__qualname__}", "pid": os.getpid()}


def _io_sleep() -> Sleep:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        return trio.sleep
    return asyncio.sleep


def note(app: str, event: str) -> None:
    """One JSON line in the lab's lifespan report (LAB_LIFESPAN_REPORT), if it asked for one: how the lab learns,
    after a server has stopped, whether each worker's lifespan shutdown ran and ran to its end. One write of one
    line to a file opened for appending, so the workers of one server do not interleave."""
    from core.settings import settings

    path = settings().lifespan_report
    if path is not None:
        line = dumps({"event": event, "app": app, "pid": os.getpid(), "time": round(time.time(), 6)}) + b"\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def on_startup(app: str) -> dict[str, Any]:
    """The lifespan startup work of every app; the returned dict becomes the ASGI lifespan state."""
    print(f"asgi-bench-lab: lifespan startup app={app} pid={os.getpid()}", file=sys.stderr, flush=True)
    state = {"sleep": _io_sleep()}
    note(app, "startup-complete")
    return state


def on_shutdown(app: str) -> None:
    """The lifespan shutdown work of every app: noted as begun, then as complete once everything before it ran."""
    note(app, "shutdown-begin")
    print(f"asgi-bench-lab: lifespan shutdown app={app} pid={os.getpid()}", file=sys.stderr, flush=True)
    note(app, "shutdown-complete")
