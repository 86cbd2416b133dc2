"""An ASGI app for reload, stop and request_timeout tests (tests/stop_test.go).

/slow           sleeps 0.6 s, then answers 5,000 bytes with a Content-Length
/stream-slow    streams 5 chunks of 1,000 bytes, 0.15 s apart (chunked)
/stream-long    the same, 0.5 s apart (2.5 s in all)
/stuck          never answers
/start-stuck    sends http.response.start, then never a body
/stream-stuck   streams one chunk, then never ends
/stubborn       never answers and swallows every cancellation
/ok             answers "ok"
The lifespan shutdown prints a line to stderr, which is Caddy's log.
"""

import asyncio
import sys


async def _stuck_forever():
    await asyncio.Event().wait()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                print("asgi_stop: lifespan shutdown ran", file=sys.stderr, flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(0.6)
        body = b"x" * 5000
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5000")]})
        await send({"type": "http.response.body", "body": body})
    elif path in ("/stream-slow", "/stream-long"):
        await send({"type": "http.response.start", "status": 200})
        for _ in range(5):
            await send({"type": "http.response.body", "body": b"y" * 1000, "more_body": True})
            await asyncio.sleep(0.15 if path == "/stream-slow" else 0.5)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stuck":
        await _stuck_forever()
    elif path == "/start-stuck":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"100")]})
        await _stuck_forever()
    elif path == "/stream-stuck":
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await _stuck_forever()
    elif path == "/stubborn":
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
    else:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})
