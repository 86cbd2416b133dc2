"""A FastAPI app: JSON, validation errors, streaming, files, lifespan state."""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel


@asynccontextmanager
async def lifespan(app):
    yield {"started": "yes"}


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


@app.get("/hello")
async def hello():
    return {"message": "hello"}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}


@app.get("/stream")
async def stream():
    async def gen():
        for i in range(3):
            yield f"part {i}\n"
            await asyncio.sleep(0.2)
    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/file")
async def file():
    return FileResponse(__file__)


@app.get("/state")
async def state(request: Request):
    return {"started": request.state.started}


@app.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"got": data})
    except WebSocketDisconnect:
        pass
