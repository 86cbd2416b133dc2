"""Echoes the request body's length and sha256 as JSON.

/read       wsgi.input.read(65536) until b""
/readline   wsgi.input.readline() until b""
/iter       for line in wsgi.input
/raw        the body itself, read with read(65536)
"""

import hashlib
import json


def _pieces(inp, path):
    """The body as the app reads it, piece by piece, in the path's way."""
    if path in ("/read", "/raw"):
        return iter(lambda: inp.read(65536), b"")
    if path == "/readline":
        return iter(inp.readline, b"")
    if path == "/iter":
        return inp
    return None


def app(environ, start_response):
    path = environ["PATH_INFO"]
    pieces = _pieces(environ["wsgi.input"], path)
    if pieces is None:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"echo"]
    h = hashlib.sha256()
    n = calls = max_chunk = 0
    parts = []
    for b in pieces:
        calls += 1
        max_chunk = max(max_chunk, len(b))
        h.update(b)
        n += len(b)
        if path == "/raw":
            parts.append(b)
    if path == "/raw":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"".join(parts)]
    body = json.dumps({"len": n, "sha256": h.hexdigest(), "calls": calls, "max_chunk": max_chunk}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
