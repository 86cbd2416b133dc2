"""Counts lifespan startups and shutdowns in lifespan.log in the process's
working directory (each test's own temp dir); GET / answers the state the
startup put in the scope."""

import os


def _log(event):
    with open(os.path.join(os.getcwd(), "lifespan.log"), "a") as f:
        f.write(event + "\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello from startup"
                _log("startup")
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                _log("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = scope["state"].get("greeting", "no state").encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def failing(scope, receive, send):
    """lifespan.startup.failed with a message."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable (test)"})


async def no_lifespan(scope, receive, send):
    """Raises on lifespan scopes, as apps without lifespan support do."""
    if scope["type"] != "http":
        raise ValueError("only http is supported")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"works without lifespan"})
