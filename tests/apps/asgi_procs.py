"""ASGI app for the worker-process tests (/segv stays on line 45): which
process serves, an echo, streams, three ways to die, 2 GiB, a loop stuck in C."""
import asyncio
import ctypes
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return await websocket(receive, send) if scope["type"] == "websocket" else None
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]  # the path includes the mount prefix (handle_path)
    text = [(b"content-type", b"text/plain")]
    if path == "/pid":
        await send({"type": "http.response.start", "status": 200, "headers": text})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
        return
    if path == "/echo":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            msg = await receive()
            more = msg.get("more_body", False)
            await send({"type": "http.response.body", "body": msg.get("body", b""), "more_body": more})
            if not more:
                return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": text})
        for i in range(100):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/exit":
        os._exit(7)
    if path == "/segv":
        ctypes.string_at(0)
    if path == "/slowstream":  # streams for 8s: exempt from request_timeout
        await send({"type": "http.response.start", "status": 200, "headers": text})
        for i in range(16):
            await send({"type": "http.response.body", "body": b"%d\n" % i, "more_body": True})
            await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/cspin":
        ctypes.PyDLL(None).sleep(30)  # the event loop itself is stuck, GIL held
    if path == "/abort":
        os.abort()  # SIGABRT
    if path == "/alloc2g":  # MemoryError under memory_limit 1GiB
        n = len(bytearray(2 << 30))  # calloc: no page is touched without a limit
        await send({"type": "http.response.start", "status": 200, "headers": text})
        await send({"type": "http.response.body", "body": str(n).encode()})
        return
    await send({"type": "http.response.start", "status": 404, "headers": text})
    await send({"type": "http.response.body", "body": b"no such path"})


async def websocket(receive, send):
    """Echoes; the message "exit" ends the process with the socket open."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") == "exit":
            os._exit(7)
        await send({"type": "websocket.send", "text": msg.get("text"), "bytes": msg.get("bytes")})
