from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from servers.matrix import load
from tests.asgi_driver import Driver

MATRIX = load()
APP_NAMES = tuple(MATRIX.apps)


def import_app(name: str) -> Any:
    module, attr = MATRIX.apps[name].target.split(":")
    return getattr(importlib.import_module(module), attr)


def run_app(name: str, scenario: Callable[[Driver], Awaitable[Any]]) -> Any:
    """Start the app's lifespan, run scenario(driver), shut the lifespan down, return the scenario's result."""

    async def main() -> Any:
        driver = Driver(import_app(name))
        assert (await driver.startup()) == {"type": "lifespan.startup.complete"}
        result = await scenario(driver)
        assert (await driver.shutdown()) == {"type": "lifespan.shutdown.complete"}
        return result

    return asyncio.run(main())


@pytest.fixture(params=APP_NAMES)
def app_name(request: pytest.FixtureRequest) -> str:
    return request.param
