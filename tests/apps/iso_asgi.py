"""A raw ASGI app for the sub-interpreter tests: its instance id and the
process's interpreter count, from an event loop in a sub-interpreter."""

import json
import uuid

import _caddysnake

INSTANCE = uuid.uuid4().hex


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps({"instance": INSTANCE, "interpreters": _caddysnake.interpreter_count()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
