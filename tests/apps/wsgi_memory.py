"""The leak check's app.

/probe   gc.collect(), then {"blocks": sys.getallocatedblocks(), "gc": len(gc.get_objects())}
/hello   reads the (small) POST body, streams back "hello " + body in three chunks
/whole   the same as one bytes in a list (sent whole), then ?pad=N dots: past
         16 KiB the bridge sends the bytes object itself, by reference
"""

import gc
import json
import sys


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/probe":
        gc.collect()
        body = json.dumps({"blocks": sys.getallocatedblocks(), "gc": len(gc.get_objects())}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    try:
        n = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        n = 0
    data = environ["wsgi.input"].read(n) if n else b""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Len", str(len(data)))])
    if path == "/whole":
        pad = int(environ["QUERY_STRING"].partition("pad=")[2] or 0)
        return [b"hello " + data + b"\n" + b"." * pad]
    return stream(data)


def stream(data):
    yield b"hello "
    yield data
    yield b"\n"
