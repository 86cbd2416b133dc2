"""The ASGI leak check's app (twin of wsgi_memory.py).

/probe   gc.collect(), then {"blocks": sys.getallocatedblocks(), "gc": len(gc.get_objects())}
/hello   reads the (small) POST body, streams back "hello " + body in three chunks
"""

import gc
import json
import sys


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/probe":
        gc.collect()
        body = json.dumps({"blocks": sys.getallocatedblocks(), "gc": len(gc.get_objects())}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    data, more = b"", True
    while more:
        msg = await receive()
        data += msg.get("body", b"")
        more = msg.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-len", str(len(data)).encode())]})
    for chunk in (b"hello ", data):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"\n"})
