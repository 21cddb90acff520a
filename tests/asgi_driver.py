"""A small in-process ASGI server for tests: runs lifespan, HTTP and websocket scopes and records every message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ASGI = {"version": "3.0", "spec_version": "2.3"}
TIMEOUT = 5.0


@dataclass
class HttpResult:
    messages: list[dict[str, Any]]

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [tuple(h) for h in self.messages[0]["headers"]]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def wire(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """What a client sees, as the comparisons use it."""
        return self.status, self.headers, self.body


@dataclass
class Driver:
    app: Any
    state: dict[str, Any] = field(default_factory=dict)
    lifespan_messages: list[dict[str, Any]] = field(default_factory=list)

    async def startup(self) -> dict[str, Any]:
        self._lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lifespan_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        self._lifespan_task = asyncio.ensure_future(self.app(scope, self._lifespan_in.get, self._lifespan_out.put))
        await self._lifespan_in.put({"type": "lifespan.startup"})
        return await self._lifespan_reply()

    async def shutdown(self) -> dict[str, Any]:
        await self._lifespan_in.put({"type": "lifespan.shutdown"})
        reply = await self._lifespan_reply()
        await asyncio.wait_for(self._lifespan_task, TIMEOUT)
        return reply

    async def _lifespan_reply(self) -> dict[str, Any]:
        getter = asyncio.ensure_future(self._lifespan_out.get())
        done, _ = await asyncio.wait(
            {getter, self._lifespan_task}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if getter not in done:
            getter.cancel()
            raise AssertionError(f"no lifespan reply; app task done={self._lifespan_task.done()}")
        self.lifespan_messages.append(getter.result())
        return getter.result()

    async def http(
        self,
        method: str,
        path: str,
        query: bytes = b"",
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: Iterable[bytes] = (b"",),
        disconnect_early: bool = False,
    ) -> HttpResult:
        scope = {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": list(headers),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": dict(self.state),
        }
        chunks = list(body)
        incoming: list[dict[str, Any]] = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
        ]
        complete = asyncio.Event()
        messages: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if incoming:
                return incoming.pop(0)
            if not disconnect_early:
                await complete.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete.set()
            await asyncio.sleep(0)  # a real server yields here too, so a disconnect can be noticed

        await asyncio.wait_for(self.app(scope, receive, send), TIMEOUT)
        return HttpResult(messages)

    async def websocket(self, path: str, frames: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Connect, send each frame (a websocket.receive message body), then disconnect; return what the app sent."""
        scope = {
            "type": "websocket",
            "asgi": ASGI,
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "subprotocols": [],
            "state": dict(self.state),
        }
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: list[dict[str, Any]] = []
        await inbox.put({"type": "websocket.connect"})
        pending = [{"type": "websocket.receive", **frame} for frame in frames]

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "websocket.accept" or message["type"] == "websocket.send":
                await inbox.put(pending.pop(0) if pending else {"type": "websocket.disconnect", "code": 1000})

        await asyncio.wait_for(self.app(scope, inbox.get, send), TIMEOUT)
        return sent
