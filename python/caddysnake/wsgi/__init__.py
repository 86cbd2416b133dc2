"""The WSGI (PEP 3333) server side of caddysnake.

The C code calls `serve(app, req, handle)` once per request on a worker
thread. Everything that talks to Caddy goes through `bridge.native` (the
`_caddysnake` module), looked up at call time so tests can replace it.

One request's path through this package:
  server.py    serve(): the entry point, the result code for Go
  environ.py   the environ (the pure-Python reference builder and its template)
  streams.py   wsgi.input and wsgi.errors
  response.py  start_response, write(), the response iterable, file_wrapper
  checks.py    the rules an app's status line and headers must follow

This module keeps the names the C bridge (serve, _thread_stack, _TEMPLATE,
InputStream, ErrorStream), the tests and the test apps use.
"""

from ..codes import APP_ERROR, APP_ERROR_AFTER_HEADERS, CLIENT_GONE, OK
from .checks import WSGIAppError
from .environ import _TEMPLATE, build_environ
from .response import WHOLE_BYTES_MAX, WHOLE_MAX, FileWrapper
from .server import _thread_stack, serve
from .streams import CHUNK, ErrorStream, InputStream

__all__ = [
    "APP_ERROR",
    "APP_ERROR_AFTER_HEADERS",
    "CHUNK",
    "CLIENT_GONE",
    "OK",
    "WHOLE_BYTES_MAX",
    "WHOLE_MAX",
    "_TEMPLATE",
    "ErrorStream",
    "FileWrapper",
    "InputStream",
    "WSGIAppError",
    "_thread_stack",
    "build_environ",
    "serve",
]
