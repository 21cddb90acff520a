"""The lab's app in FastAPI: the Starlette app, with query parameters declared and validated by FastAPI.

FastAPI's own extras (/docs, /redoc, /openapi.json) are off, and its JSON error bodies are replaced by the plain
ones the other two apps send, so the three answer with the same bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from apps import common
from apps.starlette_app import echo, http_error, loop_info, ws

NAME = "fastapi"


def plain_digits(value: str) -> str:
    """Pydantic alone would also take "+5", " 5" and "5.0" as 5; the lab's rule is plain digits."""
    if not common.PLAIN_DIGITS.fullmatch(value):
        raise ValueError("expected plain digits")
    return value


def Bounded(low: int, high: int) -> Any:  # noqa: N802 - used as a type
    return Annotated[int, BeforeValidator(plain_digits), Query(ge=low, le=high)]


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    yield common.on_startup(NAME)
    common.on_shutdown(NAME)


async def bad_request(request: Request, exc: Exception) -> Response:
    return await http_error(request, StarletteHTTPException(400))


app = FastAPI(
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
    redirect_slashes=False,
    lifespan=lifespan,
    exception_handlers={StarletteHTTPException: http_error, RequestValidationError: bad_request},
)
# Starlette's Route answers HEAD for every GET route; FastAPI's @app.get does not, so the methods are spelled out.
GET = list(common.GET)


@app.api_route("/plaintext", methods=GET, response_class=PlainTextResponse)
async def plaintext() -> str:
    return common.PLAINTEXT


@app.api_route("/json", methods=GET)
async def json() -> dict[str, str]:
    return {"message": common.MESSAGE}


@app.api_route("/io", methods=GET, response_class=PlainTextResponse)
async def io(request: Request, ms: Bounded(0, common.IO_MAX_MS)) -> str:
    await request.state.sleep(ms / 1000)
    return common.PLAINTEXT


@app.api_route("/stream", methods=GET)
async def stream(
    chunks: Bounded(0, common.STREAM_MAX_CHUNKS),
    size: Bounded(1, common.STREAM_MAX_SIZE),
) -> Response:
    async def body() -> AsyncIterator[bytes]:
        chunk = common.STREAM_BYTE * size
        for _ in range(chunks):
            yield chunk

    return StreamingResponse(body(), media_type="text/plain")


# A raw request body and the websocket are handled exactly as in the Starlette app: FastAPI adds nothing there.
app.add_api_route("/echo", echo, methods=["POST"])
app.add_api_route("/debug/loop", loop_info, methods=GET)
app.add_api_websocket_route("/ws", ws)
