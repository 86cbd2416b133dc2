"""ASGI paths that fail on purpose: body errors, bad files, bad headers.

/read             receive() until the body ends, answers its length; a body
                  error (http.disconnect) raises
/swallow          receive() until the body ends or a disconnect, answers 200
/stream-then-read starts the response and a first chunk, then receives
/ok               "ok"
/file?path=P      http.response.start, then http.response.pathsend of P
/file-after?path=P  the same after a first body chunk went out
/header?case=C    a header from HEADERS[C]
/hint?case=C      an early hint link with the bad value, then 200
/trailer?case=C   a trailer from HEADERS[C]
/many?n=N&size=S  N headers of S bytes each
/many-trailers?n=N&size=S  N trailers of S bytes each
WebSocket /ws?case=C  accepts with a header from HEADERS[C]
"""

from urllib.parse import parse_qs

HEADERS = {
    "nul-value": (b"x-bad", b"a\x00b"),
    "crlf-value": (b"x-bad", b"a\r\nx-injected: 1"),
    "lf-value": (b"x-bad", b"a\nb"),
    "ctl-value": (b"x-bad", b"a\x01b"),
    "del-value": (b"x-bad", b"a\x7fb"),
    "space-name": (b"x bad", b"v"),
    "colon-name": (b"x-bad:", b"v"),
    "empty-name": (b"", b"v"),
    "tab-value": (b"x-tab", b"a\tb"),  # allowed
    "obs-text": (b"x-latin", b"caf\xe9"),  # allowed: obs-text
}


async def start(send, headers=(), trailers=False):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), *headers], "trailers": trailers})


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        await send({"type": "websocket.accept", "headers": [HEADERS[q["case"]]]})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path in ("/read", "/swallow"):
        n, more, what = 0, True, b"no error"
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                if path == "/read":
                    raise RuntimeError("body broken")
                what = b"caught disconnect"
                break
            n += len(msg.get("body", b""))
            more = msg.get("more_body", False)
        await start(send)
        await send({"type": "http.response.body", "body": what if path == "/swallow" else b"read %d" % n})
    elif path == "/stream-then-read":
        await start(send)
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect" or not msg.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b"done"})
    elif path == "/file":
        await start(send)
        await send({"type": "http.response.pathsend", "path": q["path"]})
    elif path == "/file-after":
        await start(send)
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await send({"type": "http.response.pathsend", "path": q["path"]})
    elif path == "/header":
        await start(send, [HEADERS[q["case"]]])
        await send({"type": "http.response.body", "body": b"header sent"})
    elif path == "/hint":
        await send({"type": "http.response.early_hint", "links": [b"</a.css>; " + HEADERS[q["case"]][1]]})
        await start(send)
        await send({"type": "http.response.body", "body": b"hint sent"})
    elif path == "/trailer":
        await start(send, [(b"trailer", b"x-bad")], trailers=True)
        await send({"type": "http.response.body", "body": b"trailer sent"})
        await send({"type": "http.response.trailers", "headers": [HEADERS[q["case"]]]})
    elif path == "/many":
        n, size = int(q["n"]), int(q["size"])
        await start(send, [(b"x-h%d" % i, b"v" * size) for i in range(n)])
        await send({"type": "http.response.body", "body": b"many sent"})
    elif path == "/many-trailers":
        n, size = int(q["n"]), int(q["size"])
        await start(send, trailers=True)
        await send({"type": "http.response.body", "body": b"many sent"})
        await send({"type": "http.response.trailers",
                    "headers": [(b"x-t%d" % i, b"v" * size) for i in range(n)]})
    else:
        await start(send, [(b"content-length", b"2")])
        await send({"type": "http.response.body", "body": b"ok"})
