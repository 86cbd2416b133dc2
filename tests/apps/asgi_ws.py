"""A raw ASGI WebSocket app, one behaviour per path.

/echo        accepts (with the first offered subprotocol and an extra header),
             echoes text and bytes; "close" closes with 4001 "bye"
/reject      closes before accepting (the client sees 403)
/deny        answers with a websocket.http.response (418, a body)
/fail        raises before accepting (500)
/record      accepts, then records the client's close code and reason
/hold        accepts, then reads nothing for 5 s (back-pressure)
/unoffered   accepts with subprotocol "xmpp", whatever the client offered
/records     (HTTP) the recorded closes as JSON
/probe       (HTTP) gc.collect(), then Python's allocated blocks (the leak check)
"""

import asyncio
import gc
import json
import sys

closes = []


async def app(scope, receive, send):
    if scope["type"] == "http":
        if scope["path"] == "/probe":
            gc.collect()
            body = json.dumps({"blocks": sys.getallocatedblocks(), "gc": len(gc.get_objects()),
                               "tasks": len(asyncio.all_tasks())}).encode()
        else:
            body = json.dumps(closes).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/reject":
        await send({"type": "websocket.close"})
        return
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 418, "headers": [(b"x-denied", b"yes")]})
        await send({"type": "websocket.http.response.body", "body": b"no websockets for you"})
        return
    if path == "/fail":
        raise RuntimeError("ws boom before accept")
    subprotocols = scope["subprotocols"]
    if path == "/unoffered":
        try:
            await send({"type": "websocket.accept", "subprotocol": "xmpp"})
        except OSError:
            closes.append({"unoffered": "send raised"})
        return
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None,
                "headers": [(b"x-ws-app", b"asgi_ws")]})
    if path == "/hold":
        await asyncio.sleep(5)
    if path == "/record":
        msg = await receive()
        while msg["type"] != "websocket.disconnect":
            msg = await receive()
        closes.append({"code": msg["code"], "reason": msg.get("reason", "")})
        return
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
