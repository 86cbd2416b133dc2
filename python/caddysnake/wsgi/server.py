"""serve(), the entry point the C side calls once per request on a worker
thread: it runs the app, sends its response and returns a result code.
"""

import sys
import traceback

from .. import bridge
from ..bridge import LOG_DEBUG, LOG_ERROR, ClientDisconnected, RequestTimeout
from ..codes import APP_ERROR, APP_ERROR_AFTER_HEADERS, CLIENT_GONE, OK
from .checks import NoStartResponse
from .environ import build_environ
from .response import Response


def _failed(resp, handle, exc, what):
    """Logs an exception from the app and returns serve()'s result code."""
    if isinstance(exc, ClientDisconnected) or (resp is not None and resp.disconnected):
        bridge.log(handle, LOG_DEBUG, f"client disconnected: {exc}")
        return CLIENT_GONE
    # A whole response still waiting to be handed back was not sent: the
    # failure (in close()) can still become a clean 500.
    sent = resp is not None and resp.sent and resp.whole is None
    if isinstance(exc, RequestTimeout):
        # Go logs the timeout with the stack it was stuck in, and answers.
        bridge.log(handle, LOG_DEBUG, "request_timeout: RequestTimeout unwound the request")
        return APP_ERROR_AFTER_HEADERS if sent else APP_ERROR
    if isinstance(exc, NoStartResponse):
        message = "WSGI app error: start_response() was not called before the response iterable ended"
        bridge.log(handle, LOG_ERROR, message)
        return APP_ERROR
    where = " after the response headers were sent" if sent else ""
    tb = "".join(traceback.format_exception(exc))
    bridge.log(handle, LOG_ERROR, f"{what}{where}:\n{tb}")
    return APP_ERROR_AFTER_HEADERS if sent else APP_ERROR


def _thread_stack(ident):
    """The Python stack thread ident is in, for the log line of a request
    that ran over request_timeout (called by the C side, with the GIL)."""
    frame = sys._current_frames().get(ident)
    if frame is None:
        return "(no Python frame: the thread is not running Python code)"
    return "".join(traceback.format_stack(frame))


def serve(app, req, handle):
    """Runs one request; returns OK, APP_ERROR, APP_ERROR_AFTER_HEADERS or
    CLIENT_GONE, or (OK, status code, headers, body) for a response that is
    still to be sent whole. Never raises: apps' SystemExit and KeyboardInterrupt are
    caught too, since they must not unwind into the C caller."""
    code = OK
    resp = None
    result = None
    streams = None
    try:
        # The C side builds the environ itself (environ.c); the tuple form
        # is the pure-Python reference, for tests and tools.
        environ = req if type(req) is dict else build_environ(req, handle)
        # Kept aside: middleware may replace the environ entries.
        streams = (environ["wsgi.input"], environ["wsgi.errors"])
        resp = Response(handle, environ["REQUEST_METHOD"] == "HEAD")
        result = app(environ, resp.start_response)
        resp.finish(result)
        if resp.disconnected:
            # The app caught ClientDisconnected and carried on: the response
            # is still incomplete.
            raise ClientDisconnected("client disconnected")
    except BaseException as exc:
        code = _failed(resp, handle, exc, "WSGI app raised an exception")
    if result is not None:
        # PEP 3333, "Specification Details": close() must be called whenever
        # the request ends, normally or not.
        try:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            c = _failed(resp, handle, exc, "WSGI app raised an exception in close()")
            if code == OK:
                code = c
    if resp is not None:
        resp.finished = True
    if streams is not None:
        # The handle dies with this request: flush what the app logged and
        # make late uses of the streams harmless.
        stream, errors = streams
        stream._finished = True
        if getattr(errors, "_pending", True):
            try:
                errors.flush()
            except BaseException:
                pass
        errors._finished = True
    if resp is not None and resp.whole is not None:
        whole, resp.whole = resp.whole, None  # late writes must not send it again
        if code == OK:
            return (OK, *whole)
    return code
