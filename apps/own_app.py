"""Your app as the servers run it (servers/own_app.py): the launcher's two probes answered here, under /.lab/, and
every other request, and the lifespan, handed to your app unchanged.

The launcher names your app in LAB_OWN_APP (MODULE:ATTRIBUTE) and its folder in LAB_OWN_CODE, which goes first on
sys.path; each server worker imports this module, and so your app, once.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from apps import common
from core.settings import settings

READY = "/.lab/ready"  # "Hello, World!" once the server serves: the launcher's readiness probe
LOOP = "/.lab/loop"  # which event loop runs the app: the launcher checks it is the one asked for


def imported() -> Any:
    env = settings()
    if not env.own_app_target or not env.own_app_code:
        raise RuntimeError("apps.own_app runs your app as the launcher names it: LAB_OWN_APP and LAB_OWN_CODE")
    sys.path.insert(0, env.own_app_code)
    module, _, attribute = env.own_app_target.partition(":")
    return getattr(importlib.import_module(module), attribute)


yours = imported()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] in (READY, LOOP):
        body = common.PLAINTEXT.encode() if scope["path"] == READY else common.dumps(common.running_loop_info())
        kind = common.TEXT_TYPE if scope["path"] == READY else common.JSON_TYPE
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await yours(scope, receive, send)
