"""WSGI apps of the benchmark: raw PEP 3333, standard library only.

Every server (the caddy module, granian, gunicorn, and those behind caddy
reverse_proxy) serves these same callables, one per configuration, so the only
difference between two measurements is the server.
"""

import time

HELLO = b"Hello, world!"  # 13 bytes
_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]

# Iterations of burn() that take about 1 ms of pure-Python work on the 2-core
# machine the benchmark was written on (CPython 3.11). Fixed, so every server
# does the same work per request; bench/run.py checks the response body.
CPU_ITERATIONS = 16000


def burn(n=CPU_ITERATIONS):
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x


def hello(environ, start_response):
    """GET -> 200 text/plain "Hello, world!"."""
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


def echo(environ, start_response):
    """POST -> the request body back, as application/octet-stream."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    chunks = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    body = b"".join(chunks)
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
    )
    return [body]


def sleep(environ, start_response):
    """Blocks its thread for 10 ms (a stand-in for a database call), then hello."""
    time.sleep(0.010)
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


def cpu(environ, start_response):
    """About 1 ms of pure-Python work holding the GIL; the body is the result."""
    body = str(burn()).encode()
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
