"""Echoes the request body's length and sha256 as JSON.

/read       wsgi.input.read(65536) until b""
/readline   wsgi.input.readline() until b""
/iter       for line in wsgi.input
/raw        the body itself, read with read(65536)
"""

import hashlib
import json


def app(environ, start_response):
    path = environ["PATH_INFO"]
    inp = environ["wsgi.input"]
    h = hashlib.sha256()
    n = 0
    calls = 0
    max_chunk = 0
    parts = []
    if path in ("/read", "/raw"):
        while True:
            b = inp.read(65536)
            calls += 1
            if not b:
                break
            max_chunk = max(max_chunk, len(b))
            h.update(b)
            n += len(b)
            if path == "/raw":
                parts.append(b)
    elif path == "/readline":
        while True:
            b = inp.readline()
            calls += 1
            if not b:
                break
            max_chunk = max(max_chunk, len(b))
            h.update(b)
            n += len(b)
    elif path == "/iter":
        for b in inp:
            calls += 1
            max_chunk = max(max_chunk, len(b))
            h.update(b)
            n += len(b)
    else:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"echo"]
    if path == "/raw":
        body = b"".join(parts)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    body = json.dumps({"len": n, "sha256": h.hexdigest(), "calls": calls, "max_chunk": max_chunk}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
