"""A raw ASGI 3 app covering every HTTP message type, one path each.

/hello        "hello"
/scope        the scope as JSON (bytes shown as latin-1 text)
/echo         reads the body with receive(); answers its length and sha256
/stream       5 chunks, 300 ms apart
/big          10 MiB in 1 MiB chunks, X-SHA256 header
/error-before raises before http.response.start
/error-after  raises after the first body chunk
/no-response  returns without sending anything
/pathsend     http.response.pathsend of this file
/early-hint   a 103 Early Hints, then 200
/trailers     a response with a trailer
/wait-disconnect  waits on receive() for http.disconnect and counts it
/sleep        sleeps 30 s; counts its cancellation
/duplex       echoes each body chunk as soon as it arrives (full duplex)
/flood        200 chunks of 1 MiB, counting in "flood_sent" each send that returned
/receive-after  a task waits in receive() while the response is sent whole; counts
              what that receive() returned (or "stuck" after 5 s) in "late_receive"
/pathsend-bad http.response.pathsend of a path that cannot be encoded (send raises)
/counts       {"disconnects": n, "cancelled": n, "flood_sent": n, "late_receive": {...}}
"""

import asyncio
import hashlib
import json
import random

BIG = random.Random(3).randbytes(10 * 1024 * 1024)
BIG_SHA = hashlib.sha256(BIG).hexdigest()
counts = {"disconnects": 0, "cancelled": 0, "flood_sent": 0, "late_receive": {}}


async def respond(send, body, status=200, headers=(), content_type=b"text/plain"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), *headers]})
    await send({"type": "http.response.body", "body": body})


def jsonable(v):
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    # ASGI: path includes root_path (where the app is mounted); route on the rest.
    path = scope["path"][len(scope["root_path"]):]
    if path == "/hello":
        await respond(send, b"hello")
    elif path.startswith("/scope") or path.startswith("/prefix"):
        await respond(send, json.dumps(jsonable(scope)).encode(), content_type=b"application/json")
    elif path == "/echo":
        h, n, more, chunks = hashlib.sha256(), 0, True, 0
        while more:
            msg = await receive()
            assert msg["type"] == "http.request", msg
            h.update(msg["body"])
            n += len(msg["body"])
            chunks += 1
            more = msg.get("more_body", False)
        await respond(send, json.dumps({"len": n, "sha256": h.hexdigest(), "chunks": chunks}).encode())
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
            await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-sha256", BIG_SHA.encode())]})
        step = 1024 * 1024
        for i in range(0, len(BIG), step):
            await send({"type": "http.response.body", "body": BIG[i:i + step], "more_body": True})
        await send({"type": "http.response.body"})
    elif path == "/error-before":
        raise RuntimeError("asgi boom before start")
    elif path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
        raise RuntimeError("asgi boom after start")
    elif path == "/no-response":
        return
    elif path == "/pathsend":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": __file__})
    elif path == "/early-hint":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await respond(send, b"after hint")
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"trailer", b"x-checksum")],
                    "trailers": True})
        await send({"type": "http.response.body", "body": b"with trailers"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})
    elif path == "/wait-disconnect":
        while (await receive())["type"] != "http.disconnect":
            pass
        counts["disconnects"] += 1
    elif path == "/sleep":
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            counts["cancelled"] += 1
            raise
        await respond(send, b"slept")
    elif path == "/duplex":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        more = True
        while more:
            msg = await receive()
            more = msg.get("more_body", False)
            await send({"type": "http.response.body", "body": b"echo: " + msg["body"], "more_body": more})
    elif path == "/flood":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"f" * (1024 * 1024)
        for _ in range(200):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            counts["flood_sent"] += 1
        await send({"type": "http.response.body"})
    elif path == "/receive-after":
        waiting = asyncio.ensure_future(receive())
        await asyncio.sleep(0)  # the receive() is asked for before the response goes out
        await respond(send, b"done")
        try:
            kind = (await asyncio.wait_for(waiting, 5))["type"]
        except asyncio.TimeoutError:
            kind = "stuck"
        counts["late_receive"][kind] = counts["late_receive"].get(kind, 0) + 1
    elif path == "/pathsend-bad":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/tmp/caddysnake-\udcff"})
    elif path == "/counts":
        await respond(send, json.dumps(counts).encode(), content_type=b"application/json")
    else:
        await respond(send, b"not found", status=404)
