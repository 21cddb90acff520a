"""A deliberately wrong server for the load generator's checks, one fault per path: a body off by one character
(/plaintext), a 500 (/json), the right body as text/html (/io), and a stream sent with content-length, not chunked
(/stream)."""

TEXT = b"text/plain; charset=utf-8"
ANSWERS = {
    "/plaintext": (200, b"Hello, World?", TEXT),
    "/io": (200, b"Hello, World!", b"text/html; charset=utf-8"),
    "/stream": (200, b"x" * 16 * 1024, TEXT),
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    status, body, content_type = ANSWERS.get(scope["path"], (500, b"oops", TEXT))
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
