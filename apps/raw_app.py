"""The lab's app in raw ASGI: scope, receive and send by hand, on asyncio.

Everything Starlette does for the other two apps is written out here: routing, 404/405, query parsing, the
request-body loop, the disconnect watcher while streaming, the lifespan protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from apps import common

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

NAME = "raw"


async def respond(send: Send, status: int, body: bytes, content_type: str, allow: str | None = None) -> None:
    headers = [(b"allow", allow.encode())] if allow else []
    headers += [(b"content-length", str(len(body)).encode()), (b"content-type", content_type.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def error(send: Send, status: int, allow: str | None = None) -> None:
    await respond(send, status, common.ERRORS[status].encode(), common.TEXT_TYPE, allow)


def query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))


async def plaintext(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, common.PLAINTEXT.encode(), common.TEXT_TYPE)


async def json(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, common.dumps({"message": common.MESSAGE}), common.JSON_TYPE)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and int(declared) > common.MAX_BODY:
        return await error(send, 413)
    body = bytearray()
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if len(body) > common.MAX_BODY:
            return await error(send, 413)
        more_body = message.get("more_body", False)
    await respond(send, 200, bytes(body), common.OCTET_TYPE)


async def io(scope: Scope, receive: Receive, send: Send) -> None:
    ms = common.parse_bounded_int(query(scope).get("ms"), 0, common.IO_MAX_MS)
    if ms is None:
        return await error(send, 400)
    await scope["state"]["sleep"](ms / 1000)
    await respond(send, 200, common.PLAINTEXT.encode(), common.TEXT_TYPE)


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    chunks = common.parse_bounded_int(params.get("chunks"), 0, common.STREAM_MAX_CHUNKS)
    size = common.parse_bounded_int(params.get("size"), 1, common.STREAM_MAX_SIZE)
    if chunks is None or size is None:
        return await error(send, 400)

    async def send_chunks() -> None:
        chunk = common.STREAM_BYTE * size
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", common.TEXT_TYPE.encode())]}
        )
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def wait_for_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    # Whichever finishes first cancels the other: a client that goes away stops the stream.
    tasks = {asyncio.ensure_future(send_chunks()), asyncio.ensure_future(wait_for_disconnect())}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()


async def loop_info(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, common.dumps(common.running_loop_info()), common.JSON_TYPE)


ROUTES: dict[str, tuple[tuple[str, ...], Handler]] = {
    "/plaintext": (common.GET, plaintext),
    "/json": (common.GET, json),
    "/echo": (("POST",), echo),
    "/io": (common.GET, io),
    "/stream": (common.GET, stream),
    "/debug/loop": (common.GET, loop_info),
}


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    route = ROUTES.get(scope["path"])
    if route is None:
        return await error(send, 404)
    methods, handler = route
    if scope["method"] not in methods:
        return await error(send, 405, allow=", ".join(methods))
    await handler(scope, receive, send)


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] != "/ws":
        return await send({"type": "websocket.close", "code": 1000, "reason": ""})
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                scope["state"].update(common.on_startup(NAME))
            except Exception as exc:
                return await send({"type": "lifespan.startup.failed", "message": repr(exc)})
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            common.on_shutdown(NAME)
            return await send({"type": "lifespan.shutdown.complete"})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
