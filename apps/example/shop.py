"""A worked example of "your own app" (README: Benchmark your own app): a small FastAPI shop, not one of the lab's
three apps. Routes with path and query parameters, a pydantic body, a middleware and a lifespan, as a real app has.

    python -m lab run --own-app shop:app --own-code apps/example --server granian --server uvicorn
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field

CATALOG = {n: {"id": n, "name": f"lamp {n}", "price_cents": 999 + 1000 * n} for n in range(1, 51)}


class Order(BaseModel):
    item_id: int = Field(ge=1)
    quantity: int = Field(ge=1, le=100)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"catalog": CATALOG}


app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)


@app.middleware("http")
async def served_by(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    response.headers["x-shop"] = "example"
    return response


@app.get("/items/{item_id}")
async def item(item_id: int, request: Request) -> dict[str, Any]:
    found = request.state.catalog.get(item_id)
    if found is None:
        raise HTTPException(404)
    return found


@app.get("/search")
async def search(q: str, request: Request, limit: int = 10) -> list[dict[str, Any]]:
    return [i for i in request.state.catalog.values() if q in i["name"]][:limit]


@app.post("/orders", status_code=201)
async def order(body: Order, request: Request) -> dict[str, int]:
    found = request.state.catalog.get(body.item_id)
    if found is None:
        raise HTTPException(404)
    return {"item_id": body.item_id, "quantity": body.quantity, "total_cents": found["price_cents"] * body.quantity}
