"""python-socketio's ASGI app: replies to "ping" with a "pong" event."""

import socketio

sio = socketio.AsyncServer(async_mode="asgi")


@sio.event
async def ping(sid, data):
    await sio.emit("pong", {"echo": data}, to=sid)


app = socketio.ASGIApp(sio)
