"""The lab's app in Starlette: the raw app's routing, 404/405, query parsing and body loop come from the framework."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from apps import common

NAME = "starlette"


async def plaintext(request: Request) -> Response:
    return PlainTextResponse(common.PLAINTEXT)


async def json(request: Request) -> Response:
    return JSONResponse({"message": common.MESSAGE})


async def echo(request: Request) -> Response:
    if int(request.headers.get("content-length", 0)) > common.MAX_BODY:
        raise HTTPException(413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > common.MAX_BODY:
            raise HTTPException(413)
    return Response(bytes(body), media_type=common.OCTET_TYPE)


async def io(request: Request) -> Response:
    ms = common.parse_bounded_int(request.query_params.get("ms"), 0, common.IO_MAX_MS)
    if ms is None:
        raise HTTPException(400)
    await request.state.sleep(ms / 1000)
    return PlainTextResponse(common.PLAINTEXT)


async def stream(request: Request) -> Response:
    chunks = common.parse_bounded_int(request.query_params.get("chunks"), 0, common.STREAM_MAX_CHUNKS)
    size = common.parse_bounded_int(request.query_params.get("size"), 1, common.STREAM_MAX_SIZE)
    if chunks is None or size is None:
        raise HTTPException(400)

    async def body() -> AsyncIterator[bytes]:
        chunk = common.STREAM_BYTE * size
        for _ in range(chunks):
            yield chunk

    return StreamingResponse(body(), media_type="text/plain")


async def loop_info(request: Request) -> Response:
    return JSONResponse(common.running_loop_info())


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


async def http_error(request: Request, exc: Exception) -> Response:
    """Every HTTP error as the raw app sends it: the plain-text phrase, and for 405 a stably ordered Allow."""
    assert isinstance(exc, HTTPException)
    headers = None
    if exc.status_code == 405 and exc.headers:
        # Starlette joins a set of methods, whose order changes from one process to the next.
        headers = {"Allow": ", ".join(sorted(exc.headers["Allow"].split(", ")))}
    return PlainTextResponse(common.ERRORS[exc.status_code], status_code=exc.status_code, headers=headers)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    yield common.on_startup(NAME)
    common.on_shutdown(NAME)


app = Starlette(
    routes=[
        Route("/plaintext", plaintext),
        Route("/json", json),
        Route("/echo", echo, methods=["POST"]),
        Route("/io", io),
        Route("/stream", stream),
        Route("/debug/loop", loop_info),
        WebSocketRoute("/ws", ws),
    ],
    exception_handlers={HTTPException: http_error},
    lifespan=lifespan,
)
app.router.redirect_slashes = False  # the raw app has no trailing-slash redirects
