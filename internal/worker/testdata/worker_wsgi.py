# The WSGI app serve_test.go serves through a worker's loop.
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/exact":
        # Reads CONTENT_LENGTH bytes and no more, as Django does.
        n = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(n)).encode()]
    if path == "/stream":
        # 4 MiB in 64 KiB chunks, more than one window.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (bytes([i % 251]) * 65536 for i in range(64))
    if path == "/slow":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def slow():
            yield b"start "
            time.sleep(0.3)
            yield b"end"

        return slow()
    if path == "/stuck":
        start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(600):
            time.sleep(0.05)
        return [b"never"]
    if path == "/file":
        # This file from byte 10: the offset travels with the descriptor.
        f = open(__file__, "rb")
        f.seek(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](f)
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Path", path)])
    return [b"hello from ", path.encode("latin-1")]
