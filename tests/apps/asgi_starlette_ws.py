"""Starlette routes: an HTTP JSON endpoint and a WebSocket echo."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def hello(request):
    return JSONResponse({"framework": "starlette", "path": request.url.path})


async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text("starlette: " + text)
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[Route("/hello", hello), WebSocketRoute("/ws", echo)])
