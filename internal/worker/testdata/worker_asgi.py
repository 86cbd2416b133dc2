# The ASGI app serve_test.go serves through a worker's loop.
import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                # The test looks for it once the worker's loop returned:
                # slow, so that a loop not waiting for it returns first.
                await asyncio.sleep(0.5)
                with open(f"/tmp/caddysnake_worker_test_{os.getpid()}.shutdown", "w"):
                    pass
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        # Accepts with the offered "chat" and a header, echoes until the
        # client leaves.
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-ws", b"yes")]})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": msg.get("text"), "bytes": msg.get("bytes")})
    path = scope["path"]
    if path == "/early-hint":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"after the hint"})
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum")]})
        await send({"type": "http.response.body", "body": b"with trailers"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})
    elif path == "/stuck":
        await asyncio.sleep(60)
    elif path == "/pathsend":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": __file__})
    elif path == "/wait-disconnect":
        # Reads the body, which never comes: the client's leaving ends it.
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
    else:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"asgi " + path.encode() + b" " + body})
