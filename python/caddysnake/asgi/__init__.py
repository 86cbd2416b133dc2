"""The ASGI 3.0 server side of caddysnake: HTTP (spec 2.5), WebSocket (spec
2.4, with the websocket.http.response extension) and lifespan.

The C code calls `run_loop(app, app_handle, wake_fd, options)` on a thread of
its own. Everything for that app then runs on one event loop on that thread:
Go appends events to the app's inbox and writes to wake_fd (an eventfd, the
wake-up); the loop wakes, drains the inbox with `asgi_drain` and dispatches
each event. Native calls never block: answers that take time (a body chunk,
the end of a send Go writes from Python's bytes) come back later as events.
For an HTTP request the calls append frames to its outbox in C and say so by
returning True (over: a small body was copied) or False (a completion event
follows), never None; its final message ends the request on the Go side,
with no asgi_finish. Everything that talks to Caddy goes through
`bridge.native` (the `_caddysnake` module), looked up at call time so tests
can replace it.

The request path through this package, one file per step:
  server.py     the server loop: wake-ups, inbox events, timeouts, drain
  scope.py      the scope of a new request from its event
  http.py       one HTTP request's receive() and send()
  websocket.py  one WebSocket's receive() and send()
  exchange.py   what those two share: the app's task, sends, the ending
  lifespan.py   the lifespan protocol around the server's life
  asgi2.py      ASGI 2 apps wrapped as ASGI 3

This module keeps the names the C bridge (run_loop, build_scope,
HTTP_ASGI, HTTP_EXTENSIONS), the tests and the test apps use.
"""

from ..bridge import LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARNING
from ..codes import (
    APP_ERROR,
    APP_ERROR_AFTER_START,
    CLIENT_GONE,
    EV_ABANDON,
    EV_BODY,
    EV_DISCONNECT,
    EV_REQUEST,
    EV_REQUEST_SCOPE,
    EV_SENT,
    EV_SHUTDOWN,
    EV_WS_CLOSE,
    EV_WS_CONNECT,
    EV_WS_MESSAGE,
    OK,
    STOPPED,
    TIMED_OUT,
)
from .asgi2 import as_asgi3
from .scope import HTTP_ASGI, HTTP_EXTENSIONS, build_scope, build_websocket_scope
from .server import run_loop

__all__ = [
    "APP_ERROR",
    "APP_ERROR_AFTER_START",
    "CLIENT_GONE",
    "EV_ABANDON",
    "EV_BODY",
    "EV_DISCONNECT",
    "EV_REQUEST",
    "EV_REQUEST_SCOPE",
    "EV_SENT",
    "EV_SHUTDOWN",
    "EV_WS_CLOSE",
    "EV_WS_CONNECT",
    "EV_WS_MESSAGE",
    "HTTP_ASGI",
    "HTTP_EXTENSIONS",
    "LOG_DEBUG",
    "LOG_ERROR",
    "LOG_INFO",
    "LOG_WARNING",
    "OK",
    "STOPPED",
    "TIMED_OUT",
    "as_asgi3",
    "build_scope",
    "build_websocket_scope",
    "run_loop",
]
