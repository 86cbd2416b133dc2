"""A raw PEP 3333 app: `make run` serves it at http://127.0.0.1:9080.

  /          hello
  /environ   the WSGI environ it was given
  /stream    five chunks, one every 0.2 s (watch them arrive: curl -N)
"""

import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/environ":
        body = "".join(f"{k} = {v!r}\n" for k, v in sorted(environ.items())).encode()
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def stream():
    for i in range(5):
        yield f"chunk {i}\n".encode()
        time.sleep(0.2)
