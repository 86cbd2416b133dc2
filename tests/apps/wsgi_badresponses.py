"""WSGI paths that fail on purpose: body errors, bad files, bad headers.

/read             reads the body whole, answers its length (a body error raises)
/swallow          reads the body, catches the error and answers 200 itself
/stream-then-read sends the headers and a first chunk, then reads the body
/ok               "ok"
/file?path=P      wsgi.file_wrapper over open(P, O_RDONLY|O_NONBLOCK)
/file-after?path=P  the same, after a first chunk went out (a generator)
/header?case=C    a header from HEADERS[C] (see below)
/many?n=N&size=S  N headers of S bytes each
"""

import os
from urllib.parse import parse_qs

# Bad header cases: name, value.
HEADERS = {
    "nul-value": ("X-Bad", "a\x00b"),
    "crlf-value": ("X-Bad", "a\r\nX-Injected: 1"),
    "lf-value": ("X-Bad", "a\nb"),
    "ctl-value": ("X-Bad", "a\x01b"),
    "del-value": ("X-Bad", "a\x7fb"),
    "space-name": ("X Bad", "v"),
    "colon-name": ("X-Bad:", "v"),
    "empty-name": ("", "v"),
    "tab-value": ("X-Tab", "a\tb"),  # allowed
    "obs-text": ("X-Latin", "caf\xe9"),  # allowed: obs-text
}


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _open(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    if path == "/read":
        n = len(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"read %d" % n]
    if path == "/swallow":
        try:
            environ["wsgi.input"].read()
            what = b"no error"
        except Exception as e:  # noqa: BLE001 - the point of the path
            what = b"caught " + type(e).__name__.encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(what)))])
        return [what]
    if path == "/stream-then-read":
        def gen():
            yield b"first "
            try:
                environ["wsgi.input"].read()
                yield b"read"
            except Exception:  # noqa: BLE001
                yield b"caught"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/file":
        f = _open(q["path"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)
    if path == "/file-after":
        f = _open(q["path"])

        def gen():
            yield b"first"
            yield from environ["wsgi.file_wrapper"](f)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return gen()
    if path == "/header":
        start_response("200 OK", [("Content-Type", "text/plain"), HEADERS[q["case"]]])
        return [b"header sent"]
    if path == "/many":
        n, size = int(q["n"]), int(q["size"])
        start_response("200 OK", [("X-H%d" % i, "v" * size) for i in range(n)])
        return [b"many sent"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
