"""ASGI apps of the benchmark: raw ASGI 3, standard library only.

Served unchanged by the caddy module, granian, uvicorn and those behind caddy
reverse_proxy; lifespan messages are acknowledged so every server starts them.
"""

import asyncio

HELLO = b"Hello, world!"  # 13 bytes
_HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_HELLO_BODY = {"type": "http.response.body", "body": HELLO}


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope, receive, send):
    """GET -> 200 text/plain "Hello, world!"."""
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    await send(_HELLO_START)
    await send(_HELLO_BODY)


async def echo(scope, receive, send):
    """POST -> the request body back, as application/octet-stream."""
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # client went away
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def sleep(scope, receive, send):
    """Awaits asyncio.sleep(0.010) (a stand-in for an async database call), then hello."""
    if scope["type"] != "http":
        return await _lifespan(receive, send)
    await asyncio.sleep(0.010)
    await send(_HELLO_START)
    await send(_HELLO_BODY)


async def ws_echo(scope, receive, send):
    """WebSocket: every message back as it came. HTTP GET: hello (the
    harness's pre-check)."""
    if scope["type"] == "http":
        await send(_HELLO_START)
        await send(_HELLO_BODY)
        return
    if scope["type"] != "websocket":
        return await _lifespan(receive, send)
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
