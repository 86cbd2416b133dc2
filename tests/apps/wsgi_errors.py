"""Exceptions before and after the headers, and wsgi.errors output.

/before   raises before start_response
/after    yields one chunk, then raises
/errors   writes a marker line to wsgi.errors
/ok       200 "ok"
"""


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/before":
        raise RuntimeError("boom-before-headers-7731")
    if path == "/after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return after()
    if path == "/errors":
        environ["wsgi.errors"].write("wsgi-errors-marker-5150\n")
        environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def after():
    yield b"first-chunk|" * 100
    raise RuntimeError("boom-after-headers-8842")
