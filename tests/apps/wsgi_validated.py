"""A raw PEP 3333 app wrapped in wsgiref.validate.validator.

The validator raises AssertionError for hard violations (the request then
fails with 500) and emits WSGIWarning for soft ones; those are counted here
and /warnings reports the count (with the messages).
"""

import threading
import warnings
from wsgiref.validate import WSGIWarning, validator

_lock = threading.Lock()
_warnings = []
_orig_showwarning = warnings.showwarning


def _record(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, WSGIWarning):
        with _lock:
            _warnings.append(str(message))
        return
    _orig_showwarning(message, category, filename, lineno, file, line)


warnings.showwarning = _record
# Every WSGIWarning, not just the first one per location.
warnings.filterwarnings("always", category=WSGIWarning)


class ClosingIterable:
    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        pass


def raw_app(environ, start_response):
    path = environ["PATH_INFO"]
    inp = environ["wsgi.input"]
    if path == "/warnings":
        with _lock:
            body = ("%d\n" % len(_warnings) + "\n".join(_warnings)).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/read":
        parts = []
        while True:
            b = inp.read(65536)
            if not b:
                break
            parts.append(b)
        body = b"".join(parts)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/readline":
        lines = []
        while True:
            line = inp.readline()
            if not line:
                break
            lines.append(line)
        body = b"".join(lines)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/readlines":
        body = b"".join(inp.readlines())
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/iter":
        body = b"".join(line for line in inp)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingIterable([b"a", b"b", b"c"])
    if path == "/gen":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"x%d" % i for i in range(3))
    if path == "/errors":
        err = environ["wsgi.errors"]
        err.write("validated app wrote to wsgi.errors\n")
        err.writelines(["line one\n", "line two\n"])
        err.flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-")
        return [b"returned"]
    if path == "/status":
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Test", "1")])
        return [b"created"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


app = validator(raw_app)
