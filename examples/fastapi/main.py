"""A FastAPI app served by Caddy (see README.md in this folder).

GET /            a page that talks to /ws
GET /api/items/{id}   JSON
GET /stream      five lines, one every 0.2 s (curl -N shows them arrive)
WS  /ws          echoes each text message back
"""

import asyncio

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, StreamingResponse

app = FastAPI(title="caddysnake example")

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>FastAPI on caddysnake</title></head>
<body>
  <h1>FastAPI on caddysnake</h1>
  <p>JSON: <a href="/api/items/42">/api/items/42</a>, streaming: <a href="/stream">/stream</a>,
     API docs: <a href="/docs">/docs</a></p>
  <input id="msg" value="hello"> <button id="send">Send over WebSocket</button>
  <pre id="log"></pre>
  <script>
    const log = (s) => document.getElementById("log").textContent += s + "\\n";
    const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
    ws.onmessage = (e) => log("< " + e.data);
    ws.onclose = (e) => log("closed " + e.code);
    document.getElementById("send").onclick = () => {
      const m = document.getElementById("msg").value;
      log("> " + m);
      ws.send(m);
    };
  </script>
</body>
</html>
"""


@app.get("/", response_class=HTMLResponse)
async def index():
    return PAGE


@app.get("/api/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.get("/stream")
async def stream():
    async def lines():
        for i in range(5):
            yield f"line {i}\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(lines(), media_type="text/plain")


@app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
