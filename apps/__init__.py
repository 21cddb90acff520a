"""Three ASGI apps that are the same program at three levels of abstraction.

``raw_app`` speaks ASGI by hand, ``starlette_app`` uses Starlette's routing and responses, ``fastapi_app`` adds
FastAPI's declarative parameters on top. ``common`` holds everything they share, so the bytes they answer with
cannot drift apart.
"""
