"""Handlers that never return, for request_timeout; and a body reader, for
slow uploads and request_body_timeout."""

import os
import tempfile
import threading
import time


def spin_forever():
    n = 0
    while True:  # pure Python: RequestTimeout unwinds it
        n += 1


def wait_forever():
    threading.Event().wait()  # blocked inside C: the thread is written off


def sleep_forever():
    time.sleep(3600)  # also blocked inside C until it returns


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/ok":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path == "/loop":
        spin_forever()
    elif path == "/wait":
        wait_forever()
    elif path == "/sleep":
        sleep_forever()
    elif path == "/nap":
        time.sleep(3)  # in C past request_timeout 1s + grace, then back
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a" * 100_000]  # would be sent from the object (lanes.c kept bodies)
    elif path == "/stream":
        return stream_then_stick(start_response)
    elif path == "/bigfile":
        # Sent with sendfile by Go (wsgi.file_wrapper): to a client that
        # does not read, the worker thread waits inside that write.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(big_file(), "rb"))
    elif path == "/upload":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got %d bytes" % len(body)]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def big_file():
    path = os.path.join(tempfile.gettempdir(), "caddysnake-wsgi-stuck-%d.bin" % os.getpid())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(b"x" * (64 << 20))
    return path


def stream_then_stick(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk\n"
    spin_forever()
