"""Bodies sent by reference (a bytes of 16 to 256 KiB, returned whole).

app     always returns the same 200 KiB bytes object, BODY
probe   BODY's reference count less its idle one: how many references the
        bridge still holds. Serve it from another app block (another lane),
        so that its own job does not drop the first lane's kept bodies.
"""

import sys

BODY = b"k" * (200 * 1024)
_IDLE = sys.getrefcount(BODY)  # the module's own, and getrefcount's argument


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [BODY]


def probe(environ, start_response):
    body = str(sys.getrefcount(BODY) - _IDLE).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
