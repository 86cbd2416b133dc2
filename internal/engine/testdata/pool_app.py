"""The app the pool and lane unit tests serve (wsgi_pool_test.go,
wsgi_lanes_test.go): paths say what a request does."""

import os
import threading
import time

_ran = []  # paths in the order the worker threads started them
_ran_mu = threading.Lock()


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/ran":  # the order so far, then forget it
        with _ran_mu:
            body = ",".join(_ran).encode()
            _ran.clear()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    with _ran_mu:
        _ran.append(path)
    if path.startswith("/hold"):
        # Says it started (a frame: the pool's submit returns on it), then
        # keeps its worker thread (GIL released) until the file named by
        # the query exists; bounded at 10 s.
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"%d\n" % threading.get_ident())
        deadline = time.monotonic() + 10
        while not os.path.exists(query) and time.monotonic() < deadline:
            time.sleep(0.005)
        return [b"done"]
    if path == "/stream":  # a body of many chunks: frames
        return _stream(start_response, int(query or "3"))
    if path == "/echo":  # reads the body through wsgi.input
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ran " + path.encode("latin-1")]


def _stream(start_response, n):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Chunks", str(n))])
    for i in range(n):
        yield b"%05d:" % i + b"x" * 16384 + b"\n"
