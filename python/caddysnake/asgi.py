"""The ASGI 3.0 server side of caddysnake: HTTP (spec 2.5), WebSocket (spec
2.4, with the websocket.http.response extension) and lifespan.

The C code calls `run_loop(app, app_handle, wake_fd, options)` on a thread of
its own. Everything for that app then runs on one event loop on that thread:
Go appends events to the app's queue and writes to wake_fd (an eventfd); the
loop wakes, drains the queue with `asgi_drain` and dispatches each event.
Native calls never block: answers that take time (a body chunk, the end of a
send Go writes from Python's bytes) come back later as events. For an HTTP
request the calls append commands to its outbox in C and say so by returning
True (over: a small body was copied) or False (a completion event follows),
never None; its final message ends the request on the Go side, with no
asgi_finish. Everything that talks to Caddy goes through
`_native` (the `_caddysnake` module), looked up at call time so tests can
replace it.
"""

import asyncio
import collections
import functools
import inspect
import os
import traceback

from . import bridge
from .bridge import ClientDisconnected
from .lifespan import Lifespan
from .loader import subinterpreter_refusal

# The native module. A module attribute read at call time: tests monkeypatch it.
_native = bridge.native

# Event kinds from asgi_drain; 10 and up are WebSocket.
EV_REQUEST = 0  # (0, req, parts)
EV_BODY = 1  # (1, req, data, more_body)
EV_DISCONNECT = 2  # (2, req)
EV_SENT = 3  # (3, req, ok): also ws_accept / ws_send / ws_close completions
EV_SHUTDOWN = 4  # (4, 0): drain the requests, then run the lifespan shutdown
EV_REQUEST_SCOPE = 5  # (5, req, scope, has_body): the scope built in C, without "state"
EV_ABANDON = 6  # (6, 0): stop waiting for the requests still running: cancel them now
EV_WS_CONNECT = 10  # (10, req, parts): parts as for EV_REQUEST
EV_WS_MESSAGE = 11  # (11, req, data, is_text)
EV_WS_CLOSE = 12  # (12, req, code, reason): the client closed or the connection failed

# asgi_finish codes, as understood by the Go side.
OK = 0  # WebSocket: 403 if never accepted, close 1000 if accepted and still open
APP_ERROR = 1  # failed before http.response.start / accept: Go answers 500
APP_ERROR_AFTER_START = 2  # the response is half sent: Go aborts (WebSocket: close 1011)
CLIENT_GONE = 3
# The server ended the exchange: Go answers 503 (STOPPED) or 504 (TIMED_OUT)
# if nothing was sent, else aborts the connection (WebSocket: close 1001).
STOPPED = 4
TIMED_OUT = 5

# How long a task cancelled by the server (request_timeout, stop) may take
# to end: one that swallows its CancelledError is then abandoned, finished
# as STOPPED / TIMED_OUT, so its client and Caddy's shutdown wait no longer.
CANCEL_GRACE = 3.0

# How often request_timeout is checked: a request is cancelled at most this
# much after its deadline (request_timeout is at least 1 s).
TIMEOUT_TICK = 0.25

LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR = 0, 1, 2, 3

# Request fields in an EV_REQUEST parts tuple before the header pairs.
_FIXED_PARTS = 12

# Sends abandoned at shutdown whose completion never came: Go may still be
# reading their bytes, so they are never freed.
_abandoned = []


def _log(handle, level, message):
    try:
        _native.log(handle, level, message)
    except BaseException:  # noqa: B036 - logging must never break the loop
        pass


def _disconnect():
    # A new dict each time: apps may mutate the messages they receive.
    return {"type": "http.disconnect"}


def _await_chain(coro, limit=64):
    """Where a suspended coroutine waits, outermost first, as traceback
    lines: Task.get_stack() gives only the outermost frame of a coroutine,
    so this follows cr_await (and a generator's gi_yieldfrom) down."""
    lines = []
    while coro is not None and len(lines) < limit:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}\n')
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return lines


# ---------------------------------------------------------------- app styles


def _binds(sig, n):
    try:
        sig.bind(*range(n))
        return True
    except TypeError:
        return False


def as_asgi3(app):
    """Returns app as an ASGI 3 callable (ASGI spec, "Legacy Applications").

    An ASGI 2 app is a double callable: app(scope) returns an instance that is
    awaited with instance(receive, send). Classes are always ASGI 2 (calling
    one with a scope constructs the instance). Coroutine functions, and
    objects whose __call__ is one, are ASGI 3. For other callables the
    signature decides: one that takes exactly three arguments is a plain
    function returning an awaitable (an undecorated wrapper around an ASGI 3
    app), anything else is taken as ASGI 2.
    """
    if not inspect.isclass(app):
        if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None)):
            return app
        try:
            sig = inspect.signature(app)
        except (TypeError, ValueError):
            sig = None
        if sig is not None and _binds(sig, 3) and not _binds(sig, 1):
            return app

    async def asgi2(scope, receive, send):
        instance = app(scope)
        return await instance(receive, send)

    asgi2.__wrapped_asgi2__ = app
    return asgi2


# ---------------------------------------------------------------- scope


def _address(host, port):
    if not host:
        return None
    return (host.decode("latin-1"), int(port) if port else None)


def _split_parts(parts):
    n = len(parts)
    if n < _FIXED_PARTS or (n - _FIXED_PARTS) % 2:
        raise ValueError(f"malformed request parts tuple of length {n}")
    pairs = iter(parts[_FIXED_PARTS:])
    return parts[:_FIXED_PARTS], list(zip(pairs, pairs))


def _connection_fields(fixed, headers, state):
    """The scope keys HTTP and WebSocket scopes share."""
    (
        http_version, _method, scheme, path, raw_path, query_string, root_path,
        client_host, client_port, server_host, server_port, _has_body,
    ) = fixed
    return {
        "http_version": http_version.decode("latin-1"),
        "scheme": scheme.decode("latin-1"),
        # The spec wants path decoded from UTF-8; surrogateescape keeps bytes
        # that are not UTF-8 recoverable instead of failing the request.
        "path": path.decode("utf-8", "surrogateescape"),
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path.decode("utf-8", "surrogateescape"),
        "headers": headers,
        "client": _address(client_host, client_port),
        "server": _address(server_host, server_port),
        # Lifespan spec, "Lifespan State": each request gets a shallow copy,
        # so a request adding keys does not leak them into the next ones.
        "state": state.copy(),
    }


# The "asgi" and "extensions" values of an HTTP scope; each scope gets
# copies (the C builder, scope.c, reads these too).
HTTP_ASGI = {"version": "3.0", "spec_version": "2.5"}
HTTP_EXTENSIONS = {
    "http.response.pathsend": {},
    "http.response.early_hint": {},
    "http.response.trailers": {},
}


def build_scope(parts, state):
    """Builds an HTTP scope (ASGI HTTP spec 2.5, "Connection Scope") from an
    EV_REQUEST parts tuple; returns (scope, has_body). The reference for the
    C builder (scope.c), which makes the scope of EV_REQUEST_SCOPE events."""
    fixed, headers = _split_parts(parts)
    scope = {
        "type": "http",
        "asgi": dict(HTTP_ASGI),
        "method": fixed[1].decode("latin-1"),
        **_connection_fields(fixed, headers, state),
        "extensions": {name: dict(opts) for name, opts in HTTP_EXTENSIONS.items()},
    }
    return scope, fixed[11] != b"0"


def _subprotocols(headers):
    # WebSocket spec, "Connection Scope": subprotocols come from the
    # Sec-WebSocket-Protocol headers; RFC 6455 4.1 allows several headers,
    # each a comma-separated list.
    out = []
    for name, value in headers:
        if name.lower() == b"sec-websocket-protocol":
            out += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    return out


def build_websocket_scope(parts, state):
    """Builds a WebSocket scope (ASGI WebSocket spec 2.4, "Connection Scope")
    from an EV_WS_CONNECT parts tuple, which has the HTTP layout; its method
    and has_body fields are not part of a WebSocket scope."""
    fixed, headers = _split_parts(parts)
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        **_connection_fields(fixed, headers, state),
        "subprotocols": _subprotocols(headers),
        "extensions": {"websocket.http.response": {}},
    }


def _request_args(event, state):
    """_Request's constructor arguments (after server and handle) from an
    EV_REQUEST event."""
    return build_scope(event[2], state)


def _c_request_args(event, state):
    """The same from an EV_REQUEST_SCOPE event."""
    scope = event[2]
    # Lifespan spec, "Lifespan State": a shallow copy per request.
    scope["state"] = state.copy()
    return scope, event[3]


def _websocket_args(event, state):
    """_WebSocket's constructor arguments from an EV_WS_CONNECT event."""
    return (build_websocket_scope(event[2], state),)


def _to_bytes(value, what):
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Exactly bytes: the Go side reads the object's memory directly.
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


def _byte_pairs(headers, what):
    out = []
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"{what} headers must be [name, value] pairs of bytes, got {item!r}") from None
        if type(name) is not bytes or type(value) is not bytes:
            name = _to_bytes(name, f"{what} header name")
            value = _to_bytes(value, f"{what} header value")
        out.append((name, value))
    return out


# ---------------------------------------------------------------- one exchange


class _Exchange:
    """What an HTTP request and a WebSocket connection share: the app's task
    and how it ends, and sends, one at a time, whose bytes Go reads until
    their completion event.

    A subclass provides receive() and send(), `disconnected`, and the hooks:
    _wake() (answers a waiting receive()), _lost() (a failed completion: the
    client is gone), _refused() (a native call raised ClientDisconnected),
    _where() and _unfinished_code(); _KIND and _APP name it in log messages.
    """

    __slots__ = (
        "server", "handle", "scope", "task", "waiter",
        # send
        "ended", "end_ok", "sending", "send_fut",
        # ending
        "cancelled", "gone", "error", "task_done", "finished", "stop_code", "deadline",
        # the native side
        "outbox", "handed_off",
    )

    def __init__(self, server, handle, scope):
        self.server = server
        self.handle = handle
        self.scope = scope
        self.task = None
        self.waiter = None  # future of the receive() now waiting
        # The app's last message was issued: HTTP the final body, pathsend or
        # trailers; WebSocket the close or the final denial body.
        self.ended = False
        self.end_ok = False  # ... and its completion came back ok: the exchange is over
        self.sending = None  # what Go is reading until the completion event
        self.send_fut = None  # future of the send() waiting for that completion
        self.cancelled = False  # we cancelled the task (shutdown; HTTP also a disconnect nobody hears)
        self.gone = False  # the task ended because the client left
        self.error = False  # the app raised (logged already)
        self.task_done = False
        self.finished = False  # asgi_finish was called: the handle is dead
        self.stop_code = None  # STOPPED / TIMED_OUT: the server cancelled the task (stop())
        self.deadline = 0.0  # loop.time() past which request_timeout cancels it; 0: none
        # Native calls for this exchange go to an outbox (they return True or
        # False, not None): its final message ends it on the Go side, with
        # no asgi_finish needed, once that message was handed over.
        self.outbox = False
        self.handed_off = False

    # ------------------------------------------------------------ task

    async def run(self):
        try:
            result = await self.server.app(self.scope, self.receive, self.send)
        except BaseException as exc:  # noqa: B036 - nothing may unwind into the loop
            self._failed(exc)
            return
        if result is not None:
            _log(self.handle, LOG_WARNING, f"ASGI callable should return None, but returned {result!r}")

    def _client_left(self, exc):
        """Whether exc ended the task because the client left, not an app bug."""
        return isinstance(exc, ClientDisconnected) or (
            (self.cancelled or self.stop_code is not None) and isinstance(exc, asyncio.CancelledError))

    def _failed(self, exc):
        if self._client_left(exc):
            self.gone = True
            _log(self.handle, LOG_DEBUG, f"ASGI {self._KIND} ended, client disconnected: {exc!r}")
            return
        self.error = True
        where = self._where()
        tb = "".join(traceback.format_exception(exc))
        _log(self.handle, LOG_ERROR, f"ASGI {self._APP} raised an exception{where}:\n{tb}")

    def done(self, task):
        """The task's done callback."""
        self.task_done = True
        self.task = None  # breaks the exchange <-> task cycle
        if task.cancelled():
            # Cancelled before its first step: run() never saw it.
            self.gone = True
        self._finish()

    def _finish(self):
        # Never while Go may still read bytes of an outstanding send.
        if self.finished or not self.task_done or self.sending is not None:
            return
        self.finished = True
        handle = self.handle
        self.deadline = 0.0
        if self.end_ok:
            # The last message (for a WebSocket also the 403 a close before
            # accept causes) went out: whatever the app did afterwards,
            # nothing is left for Go.
            code = OK
        elif self.stop_code is not None:
            # Never "complete": the client must not take a response cut
            # short by the server for a whole one.
            code = self.stop_code
        elif self.gone or self.disconnected:
            code = CLIENT_GONE
        else:
            code = self._unfinished_code()
        self._wake()  # a receive() left waiting in some other task of the app
        self.scope = None
        self.server.forget(handle)
        if self.handed_off:
            return  # Go ends the request when it takes the final message
        try:
            _native.asgi_finish(handle, code)
        except BaseException as exc:  # noqa: B036
            _log(self.server.handle, LOG_ERROR, f"asgi_finish failed: {exc!r}")

    def stop(self, code):
        """The server ends the exchange (code STOPPED or TIMED_OUT): the
        task is cancelled, and abandoned if it is still running
        CANCEL_GRACE seconds later."""
        if self.finished or self.stop_code is not None:
            return
        self.stop_code = code
        task = self.task
        if task is not None and not task.done():
            task.cancel()
        # Also when the task is over but a send is still outstanding: Go may
        # give up on the request without ever answering it.
        self.server.loop.call_later(CANCEL_GRACE, self._overdue)
        self._finish()

    def _overdue(self):
        if self.finished:
            return
        _log(self.handle, LOG_ERROR,
             f"ASGI {self._KIND} {self._what()} still running {CANCEL_GRACE:g}s after it was cancelled "
             f"(it swallows CancelledError?): abandoned, its connection closed")
        self.force_finish()

    def force_finish(self):
        """The server gives up on this exchange's task: finished as stopped,
        timed out or client-gone, whatever the task does from now on."""
        if self.sending is not None:
            _abandoned.append(self.sending)
            self.sending = None
        if self.stop_code is None and not self.cancelled:
            self.stop_code = STOPPED
        self.task_done = True
        self._finish()

    def _what(self):
        scope = self.scope or {}
        return f"{scope.get('method', 'GET')} {scope.get('path', '?')}"

    # ------------------------------------------------------------ events

    def on_sent(self, ok):
        """The completion event of the outstanding send."""
        self.sending = None
        fut, self.send_fut = self.send_fut, None
        if ok:
            if self.ended:
                self.end_ok = True
        else:
            self._lost()
        if fut is not None and not fut.done():
            fut.set_result(ok)
        self._finish()

    # ------------------------------------------------------------ send

    def _call(self, fn, *args):
        try:
            result = fn(self.handle, *args)
        except ClientDisconnected:
            self._refused()
            raise
        if result is not None:
            self.outbox = True
            # ended is set before the final message's call, so this is that
            # call having gone through.
            self.handed_off = self.ended
        return result

    async def _ready(self):
        # An earlier send() was cancelled before its completion arrived: one
        # send at a time, so this one waits for it.
        if self.sending is not None:
            await self._completion()

    async def _completion(self):
        fut = self.send_fut = self.server.loop.create_future()
        if not await fut:
            raise ClientDisconnected("client disconnected")


# ---------------------------------------------------------------- one request


class _Request(_Exchange):
    """One HTTP request: the app's task, its receive() and send()."""

    _KIND = "request"
    _APP = "app"

    __slots__ = (
        # request body
        "expect_body", "body_done", "receiving", "buffered",
        # response
        "response_started", "trailers", "trailers_pending",
        # ending
        "disconnected",
    )

    def __init__(self, server, handle, scope, expect_body):
        _Exchange.__init__(self, server, handle, scope)
        self.expect_body = expect_body  # has_body was not b"0"
        self.body_done = False  # the final http.request was delivered
        self.receiving = False  # an asgi_receive is outstanding
        self.buffered = None  # a chunk that arrived after its receive() was cancelled
        self.response_started = False
        self.trailers = False  # http.response.start asked for trailers
        self.trailers_pending = False  # body ended, trailers must follow
        self.disconnected = False

    # ------------------------------------------------------------ task

    def _client_left(self, exc):
        # Once the client is gone, whatever the app raises is put down to
        # that (unlike WebSocket, where a disconnect is an ordinary event).
        return self.disconnected or _Exchange._client_left(self, exc)

    def _where(self):
        if self.ended:
            return " after the response completed"
        if self.response_started:
            return " after the response started"
        return ""

    def _unfinished_code(self):
        if self.error:
            return APP_ERROR_AFTER_START if self.response_started else APP_ERROR
        if not self.response_started:
            _log(self.handle, LOG_ERROR, "ASGI callable returned without starting response")
            return APP_ERROR
        _log(self.handle, LOG_ERROR, "ASGI callable returned without completing response")
        return APP_ERROR_AFTER_START

    # ------------------------------------------------------------ events

    def _wake(self):
        """Answers a waiting receive() with http.disconnect; True if there was one."""
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(_disconnect())
            return True
        return False

    def _lost(self):
        self.disconnected = True
        self._wake()

    def _refused(self):
        self.disconnected = True

    def on_body(self, data, more):
        self.receiving = False
        msg = {"type": "http.request", "body": data, "more_body": more}
        if not more:
            self.body_done = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(msg)
        else:
            self.buffered = msg

    def on_timeout(self):
        """request_timeout passed: the task is cancelled (stop); Go answers
        504, or aborts a response that started."""
        self.deadline = 0.0
        if self.finished or self.stop_code is not None:
            return
        task = self.task
        where = "".join(_await_chain(task.get_coro())) if task is not None else ""
        _log(self.handle, LOG_ERROR,
             f"ASGI request timed out after {self.server.request_timeout:g}s (request_timeout): "
             f"{self._what()}; cancelling it. It was waiting in:\n{where}")
        self.stop(TIMED_OUT)

    def on_disconnect(self):
        self.disconnected = True
        if self._wake() or self.ended or self.task is None:
            return  # the app hears of it, or there is nothing left to stop
        # Nobody listens: stop the coroutine, its client is gone. One that
        # swallows the cancellation would hold the connection (CLOSE_WAIT)
        # and Caddy's shutdown: it is abandoned CANCEL_GRACE seconds later.
        self.cancelled = True
        self.task.cancel()
        self.server.loop.call_later(CANCEL_GRACE, self._overdue)

    # ------------------------------------------------------------ receive

    async def receive(self):
        # ASGI HTTP spec: once the response is sent or the client is gone,
        # receive() returns http.disconnect.
        if self.disconnected or self.ended or self.finished:
            return _disconnect()
        msg = self.buffered
        if msg is not None:
            self.buffered = None
            return msg
        if not self.body_done:
            if not self.expect_body:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if not self.receiving:
                # Lazily, one chunk per receive(): nothing is read ahead.
                try:
                    _native.asgi_receive(self.handle)
                except ClientDisconnected:
                    # The request died on the Go side: for receive() that
                    # is just a disconnect, not an error.
                    self.disconnected = True
                    return _disconnect()
                self.receiving = True
        # Otherwise the body is over: wait for the disconnect or the end of
        # the response (apps wait like this to notice a client leaving).
        if self.waiter is not None:
            raise RuntimeError("receive() called while another receive() is waiting")
        fut = self.waiter = self.server.loop.create_future()
        try:
            return await fut
        finally:
            self.waiter = None

    # ------------------------------------------------------------ send

    async def send(self, message):
        kind = message.get("type")
        if self.finished:
            raise RuntimeError(f"ASGI message '{kind}' sent after the request finished")
        if self.disconnected:
            # HTTP spec 2.4+: send() on a closed connection raises an OSError.
            raise ClientDisconnected("client disconnected")
        f = self.send_fut
        if f is not None and not f.done():
            raise RuntimeError(f"ASGI message '{kind}' sent while another send() is still in progress")
        if not self.response_started:
            if kind == "http.response.start":
                return self._start(message)
            if kind == "http.response.early_hint":
                return self._early_hint(message)
            expected = "http.response.start"
        elif self.ended:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        elif self.trailers_pending:
            if kind == "http.response.trailers":
                return await self._send_trailers(message)
            expected = "http.response.trailers"
        else:
            if kind == "http.response.body":
                return await self._send_body(message)
            if kind == "http.response.pathsend":
                return await self._send_path(message)
            expected = "http.response.body"
        raise RuntimeError(f"Expected ASGI message '{expected}', but got '{kind}'.")

    def _start(self, message):
        status = message.get("status")
        if type(status) is not int:
            raise TypeError(f"http.response.start 'status' must be an int, not {type(status).__name__}")
        if not 200 <= status <= 999:
            # Go treats 1xx as informational, not as the response.
            raise ValueError(
                f"http.response.start 'status' must be 200-999, got {status} "
                f"(send 103 with http.response.early_hint)"
            )
        headers = _byte_pairs(message.get("headers", ()), "http.response.start")
        trailers = bool(message.get("trailers", False))
        self._call(_native.asgi_start, status, headers, trailers)
        self.response_started = True
        self.trailers = trailers

    def _early_hint(self, message):
        # The http.response.early_hint extension: a 103 before the response,
        # carrying the message's "links" as Link headers (RFC 8297).
        links = message.get("links", ())
        if isinstance(links, (bytes, str)) or not all(isinstance(link, bytes) for link in links):
            raise TypeError("http.response.early_hint 'links' must be an iterable of bytes")
        self._call(_native.asgi_early_hint, [(b"link", link) for link in links])

    def _end_of_body(self):
        if self.trailers:
            self.trailers_pending = True
        else:
            self._end_of_response()

    def _end_of_response(self):
        self.ended = True
        if not self.receiving:
            self._wake()  # a receive() waiting after the body gets http.disconnect

    async def _send_body(self, message):
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = _to_bytes(body, "http.response.body 'body'")
        more = bool(message.get("more_body", False))
        if more and not body:
            return  # nothing to send, and nothing changes
        if more and self.deadline:
            # A streamed response (server-sent events, a long download) is
            # long by design: request_timeout bounds the app until it
            # streams, not the stream.
            self.deadline = 0.0
        await self._ready()
        if not more:
            self._end_of_body()
        if self._call(_native.asgi_body, body, more):
            # Copied into the request's outbox: the send is over, and no
            # completion event follows.
            if self.ended:
                self.end_ok = True
            return
        # Go reads body's memory until the completion event: keep it alive
        # on the request, even if this coroutine is cancelled meanwhile.
        self.sending = body
        await self._completion()

    async def _send_path(self, message):
        # The http.response.pathsend extension: the file is the whole body.
        path = message.get("path")
        if not isinstance(path, str):
            raise TypeError(f"http.response.pathsend 'path' must be a str, not {type(path).__name__}")
        if not os.path.isabs(path):
            raise ValueError(f"http.response.pathsend 'path' must be absolute, got {path!r}")
        await self._ready()
        self._end_of_body()
        self._call(_native.asgi_pathsend, path)
        self.sending = path
        await self._completion()

    async def _send_trailers(self, message):
        # The http.response.trailers extension.
        headers = _byte_pairs(message.get("headers", ()), "http.response.trailers")
        more = bool(message.get("more_trailers", False))
        await self._ready()
        if not more:
            self.trailers_pending = False
            self._end_of_response()
        self._call(_native.asgi_trailers, headers, more)
        self.sending = headers
        await self._completion()


# ---------------------------------------------------------------- one WebSocket

# Close code for a connection that ended without a close frame (RFC 6455
# 7.4.1): what receive() reports when there is no better code.
WS_ABNORMAL_CLOSURE = 1006
WS_GOING_AWAY = 1001

_WS_BEFORE_ACCEPT = ("websocket.accept", "websocket.close", "websocket.http.response.start")


def _ws_expected(expected, kind):
    names = [f"'{e}'" for e in expected]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return RuntimeError(f"Expected ASGI message {listed}, but got '{kind}'.")


class _WebSocket(_Exchange):
    """One WebSocket connection: the app's task, its receive() and send().

    Go reads client messages ahead into the app's event queue, but only as
    many as Python granted credits for: each websocket.receive handed to the
    app grants one more (ws_receive), so at most Go's window is ever queued.
    """

    _KIND = "websocket"
    _APP = "websocket app"

    __slots__ = (
        # receive
        "connect_sent", "inbox", "peer_close",
        # send
        "accepted", "denial_started", "close_sent", "close_code", "close_reason",
    )

    def __init__(self, server, handle, scope):
        _Exchange.__init__(self, server, handle, scope)
        self.connect_sent = False  # receive() returned websocket.connect
        self.inbox = collections.deque()  # (data, is_text) not yet handed to the app
        self.peer_close = None  # (code, reason) once the client is gone
        self.accepted = False  # ws_accept was called
        self.denial_started = False  # websocket.http.response.start was sent
        self.close_sent = False  # the app sent websocket.close
        self.close_code = WS_ABNORMAL_CLOSURE  # its code and reason, for receive()
        self.close_reason = ""

    @property
    def disconnected(self):
        return self.peer_close is not None

    def _lost(self, code=WS_ABNORMAL_CLOSURE, reason=""):
        # The first report wins: receive() answers the same disconnect every time.
        if self.peer_close is None:
            self.peer_close = (code, reason)
        self._wake()

    # A native call that finds the connection gone: a drop without a close frame.
    _refused = _lost

    # ------------------------------------------------------------ task

    # Unlike HTTP, a disconnect is an ordinary WebSocket event: an app that
    # raises something else after it still has a bug worth logging, so
    # _client_left is _Exchange's.

    def _where(self):
        if self.ended:
            return " after the denial response completed" if self.denial_started else " after closing"
        if self.accepted:
            return " after accepting"
        if self.denial_started:
            return " after the denial response started"
        return ""

    def _unfinished_code(self):
        if self.error:
            # Before accept Go can still answer 500; after it, close 1011.
            return APP_ERROR_AFTER_START if self.accepted or self.denial_started else APP_ERROR
        if self.denial_started:
            _log(self.handle, LOG_ERROR, "ASGI callable returned without completing the denial response")
            return APP_ERROR_AFTER_START
        # Spec: returning without accepting is a rejection (Go answers
        # 403); returning after accepting closes the connection (1000).
        return OK

    # ------------------------------------------------------------ events

    def _wake(self):
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def on_message(self, data, is_text):
        if self.close_sent or self.finished:
            return  # the app is done reading: nobody will ask for it
        self.inbox.append((data, is_text))
        self._wake()

    def on_close(self, code, reason):
        self._lost(code, reason.decode("utf-8", "replace"))

    def going_away(self):
        """The server is stopping or reloading: receive() reports a
        disconnect with 1001 (RFC 6455: going away) now, as uvicorn does, so
        the app ends and the client reconnects to the new configuration."""
        if self.accepted and not self.close_sent:
            self._lost(WS_GOING_AWAY, "server shutting down")

    def on_disconnect(self):
        # Not a WebSocket event kind, but if Go reports the connection gone
        # this way it means the same as a drop without a close frame. Unlike
        # HTTP the task is not cancelled: WebSocket apps often only send,
        # and their next send() raises ClientDisconnected instead.
        self._lost()

    # ------------------------------------------------------------ receive

    def _disconnect_message(self):
        if self.peer_close is not None:
            code, reason = self.peer_close
        elif self.accepted and self.close_sent:
            # The server closed the connection: its close frame's code.
            code, reason = self.close_code, self.close_reason
        else:
            # Rejected before the handshake (403 or a denial response), or the
            # connection finished: no close frame was ever exchanged.
            code, reason = WS_ABNORMAL_CLOSURE, ""
        # A new dict each time: apps may mutate the messages they receive.
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    async def receive(self):
        # WebSocket spec: websocket.connect comes first, whatever happened.
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self.close_sent or self.finished or (self.ended and self.denial_started):
                # The app ended the connection itself: unread messages are moot.
                return self._disconnect_message()
            if self.inbox:
                data, is_text = self.inbox.popleft()
                self._grant()
                if is_text:
                    # Go fails connections whose text is not UTF-8 (RFC 6455
                    # 8.1); "replace" only guards against a broken peer.
                    return {"type": "websocket.receive", "text": data.decode("utf-8", "replace")}
                return {"type": "websocket.receive", "bytes": data}
            if self.peer_close is not None:
                # Messages the client sent before closing come first.
                return self._disconnect_message()
            # Nothing yet. Before accept this waits for the handshake: Go reads
            # no message until then, so only a disconnect can come first.
            if self.waiter is not None:
                raise RuntimeError("receive() called while another receive() is waiting")
            fut = self.waiter = self.server.loop.create_future()
            try:
                await fut
            finally:
                self.waiter = None

    def _grant(self):
        # One credit per message handed out: Go keeps its read-ahead window full.
        try:
            _native.ws_receive(self.handle)
        except ClientDisconnected:
            self.peer_close = self.peer_close or (WS_ABNORMAL_CLOSURE, "")

    # ------------------------------------------------------------ send

    async def send(self, message):
        kind = message.get("type")
        if self.finished:
            raise RuntimeError(f"ASGI message '{kind}' sent after the websocket finished")
        f = self.send_fut
        if f is not None and not f.done():
            raise RuntimeError(f"ASGI message '{kind}' sent while another send() is still in progress")
        if self.disconnected:
            # WebSocket spec 2.4+: send() on a closed connection raises an OSError.
            raise ClientDisconnected("client disconnected")
        if self.close_sent:
            if kind in ("websocket.send", "websocket.close"):
                raise ClientDisconnected(f"'{kind}' sent after 'websocket.close': the connection is closed")
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after 'websocket.close'.")
        if self.denial_started:
            if self.ended:
                raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
            if kind == "websocket.http.response.body":
                return await self._send_denial_body(message)
            raise _ws_expected(("websocket.http.response.body",), kind)
        if not self.accepted:
            if kind == "websocket.accept":
                return await self._accept(message)
            if kind == "websocket.close":
                return await self._close(message)
            if kind == "websocket.http.response.start":
                return self._start_denial(message)
            raise _ws_expected(_WS_BEFORE_ACCEPT, kind)
        if kind == "websocket.send":
            return await self._send_message(message)
        if kind == "websocket.close":
            return await self._close(message)
        raise _ws_expected(("websocket.send", "websocket.close"), kind)

    async def _accept(self, message):
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if not isinstance(subprotocol, str):
                raise TypeError(f"websocket.accept 'subprotocol' must be a str or None, "
                                f"not {type(subprotocol).__name__}")
            # One the client did not offer: the server refuses the handshake
            # (wsconform.go), and this send fails as for a client gone.
        headers = _byte_pairs(message.get("headers", ()), "websocket.accept")
        if any(name.lower() == b"sec-websocket-protocol" for name, _ in headers):
            # WebSocket spec, "Accept": the subprotocol key sets that header.
            raise ValueError("websocket.accept 'headers' must not include sec-websocket-protocol; "
                             "use the 'subprotocol' key instead")
        await self._ready()
        self._call(_native.ws_accept, subprotocol or "", headers)
        self.accepted = True
        self.sending = headers
        await self._completion()

    async def _send_message(self, message):
        data, text = message.get("bytes"), message.get("text")
        # WebSocket spec, "Send": exactly one of bytes and text is non-None.
        if (data is None) == (text is None):
            which = "both" if data is not None else "neither"
            raise ValueError(f"websocket.send must have exactly one of 'bytes' and 'text', got {which}")
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"websocket.send 'text' must be a str, not {type(text).__name__}")
            payload, is_text = text.encode("utf-8"), True
        else:
            payload, is_text = _to_bytes(data, "websocket.send 'bytes'"), False
        await self._ready()
        self._call(_native.ws_send, payload, is_text)
        # Go reads payload's memory until the completion event: keep it alive
        # on the connection, even if this coroutine is cancelled meanwhile.
        self.sending = payload
        await self._completion()

    async def _close(self, message):
        code = message.get("code", 1000)
        reason = message.get("reason") or ""  # spec 2.3: reason may be None
        if type(code) is not int:
            raise TypeError(f"websocket.close 'code' must be an int, not {type(code).__name__}")
        if not isinstance(reason, str):
            raise TypeError(f"websocket.close 'reason' must be a str, not {type(reason).__name__}")
        await self._ready()
        # Before accept Go answers the handshake with 403 (WebSocket spec,
        # "Close"); after it, a close frame goes out.
        self._call(_native.ws_close, code, reason)
        self.close_sent = True
        self.close_code, self.close_reason = code, reason
        self.ended = True
        self.sending = reason
        self._wake()  # a receive() waiting elsewhere gets websocket.disconnect
        await self._completion()

    def _start_denial(self, message):
        # The websocket.http.response extension: an HTTP response instead
        # of the handshake.
        status = message.get("status")
        if type(status) is not int:
            raise TypeError(f"websocket.http.response.start 'status' must be an int, not {type(status).__name__}")
        if not 200 <= status <= 999:
            raise ValueError(f"websocket.http.response.start 'status' must be 200-999, got {status}")
        headers = _byte_pairs(message.get("headers", ()), "websocket.http.response.start")
        self._call(_native.asgi_start, status, headers, False)
        self.denial_started = True

    async def _send_denial_body(self, message):
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = _to_bytes(body, "websocket.http.response.body 'body'")
        more = bool(message.get("more_body", False))
        if more and not body:
            return
        await self._ready()
        if not more:
            self.ended = True
        self._call(_native.asgi_body, body, more)
        self.sending = body
        if not more:
            self._wake()
        await self._completion()


# ---------------------------------------------------------------- the server


class _StartupError(Exception):
    """A problem found before the app runs; the message goes to asgi_ready."""


def _new_loop(kind):
    if kind == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError as e:
        if kind != "uvloop":
            return asyncio.new_event_loop()
        if subinterpreter_refusal(e) is not None:
            # Installing it would not help: uvloop is a Cython module, which
            # loads in one interpreter per process only.
            raise _StartupError(
                "loop uvloop: uvloop cannot run in a sub-interpreter; set loop asyncio "
                '(or remove "interpreters" from the python block to serve the app from the main interpreter)'
            ) from None
        raise _StartupError(
            "loop uvloop: uvloop is not installed; run pip install uvloop in the app's venv "
            "(or set loop to asyncio or auto)"
        ) from None
    return uvloop.new_event_loop()


def _parse_options(options):
    options = options or {}
    lifespan = options.get("lifespan", "auto")
    if lifespan not in ("on", "off", "auto"):
        raise _StartupError(f'lifespan must be "on", "off" or "auto", not {lifespan!r}')
    loop = options.get("loop", "auto")
    if loop not in ("asyncio", "uvloop", "auto"):
        raise _StartupError(f'loop must be "asyncio", "uvloop" or "auto", not {loop!r}')
    startup_timeout = float(options.get("startup_timeout", 60.0))
    shutdown_timeout = float(options.get("shutdown_timeout", 30.0))
    request_timeout = float(options.get("request_timeout", 0.0))
    return lifespan, loop, startup_timeout, shutdown_timeout, request_timeout


class _Server:
    """One app's event loop side: dispatches events, owns the requests."""

    def __init__(self, app, handle, wake_fd, loop, lifespan_mode, startup_timeout, shutdown_timeout,
                 request_timeout=0.0):
        self.app = as_asgi3(app)
        self.handle = handle
        self.wake_fd = wake_fd
        self.loop = loop
        self.state = {}
        self.lifespan = Lifespan(self.app, lifespan_mode, self.state, startup_timeout, shutdown_timeout,
                                 self.log)
        self.shutdown_timeout = shutdown_timeout
        self.request_timeout = request_timeout  # seconds; 0: none
        self.requests = {}
        self.serving = False  # events are dispatched (after a successful startup)
        self.stopping = False  # drained: new requests are refused (503)
        self.stop_fut = None  # resolved by EV_SHUTDOWN
        self.idle = None  # resolved when the last request finishes during shutdown
        self.abandoning = False  # EV_ABANDON came: running requests are cancelled
        self.ready_sent = False
        self.stopped_sent = False
        # Event kind -> handler.
        self.dispatch = {
            EV_REQUEST: self.on_request,
            EV_REQUEST_SCOPE: self.on_request_scope,
            EV_BODY: self.on_body,
            EV_DISCONNECT: self.on_disconnect,
            EV_SENT: self.on_sent,
            EV_SHUTDOWN: self.on_shutdown,
            EV_ABANDON: self.on_abandon,
            EV_WS_CONNECT: self.on_ws_connect,
            EV_WS_MESSAGE: self.on_ws_message,
            EV_WS_CLOSE: self.on_ws_close,
        }

    def log(self, level, message):
        _log(self.handle, level, message)

    def loop_exception(self, loop, context):
        # E.g. "Task exception was never retrieved" from an app's own tasks:
        # into Caddy's log rather than this thread's stderr.
        message = context.get("message") or "unhandled exception in the event loop"
        exc = context.get("exception")
        if exc is not None:
            message += ":\n" + "".join(traceback.format_exception(exc))
        self.log(LOG_ERROR, message)

    # ------------------------------------------------------------ events

    def on_wake(self):
        try:
            os.read(self.wake_fd, 8)  # resets the eventfd counter
        except BlockingIOError:
            pass
        if self.serving:
            self.drain()
        # Before startup finished, events stay queued on the Go side: drain()
        # runs once right after asgi_ready.

    def drain(self):
        dispatch = self.dispatch
        while True:
            try:
                events = _native.asgi_drain(self.handle)
            except BaseException as exc:  # noqa: B036
                self.log(LOG_ERROR, "asgi_drain failed:\n" + "".join(traceback.format_exception(exc)))
                return
            if not events:
                return
            for event in events:
                handler = dispatch.get(event[0])
                if handler is None:
                    self.log(LOG_WARNING, f"ignoring ASGI event of unknown kind {event[0]!r}")
                    continue
                try:
                    handler(event)
                except BaseException as exc:  # noqa: B036 - one bad event must not stop the others
                    self.log(LOG_ERROR, f"handling ASGI event {event[0]!r} failed:\n"
                                        + "".join(traceback.format_exception(exc)))
                    self._abandon(event)

    def _abandon(self, event):
        """Ends the task of a request whose event could not be handled: left
        alone, it (and its client, and its goroutine in Go) would wait for that
        event forever. Cancelled without being marked client-caused, it ends as
        an app error: 500 before the response started, an abort after."""
        ex = self.requests.get(event[1]) if len(event) > 1 else None
        if ex is not None and ex.task is not None and not ex.task.done():
            ex.task.cancel()

    def on_request(self, event):
        self._open(event, "request", _request_args, _Request)

    def on_request_scope(self, event):
        self._open(event, "request", _c_request_args, _Request)

    def on_ws_connect(self, event):
        self._open(event, "websocket", _websocket_args, _WebSocket)

    def _open(self, event, what, build, cls):
        """Starts the app's task for a new HTTP request or WebSocket: build
        turns the event into the exchange's constructor arguments."""
        req = event[1]
        if self.stopping or self.abandoning:
            _log(req, LOG_WARNING, f"{what} arrived after the ASGI app stopped serving: 503")
            _native.asgi_finish(req, STOPPED)
            return
        try:
            args = build(event, self.state)
        except Exception as exc:
            _log(req, LOG_ERROR, f"bad ASGI {what} from the native side: {exc!r}")
            _native.asgi_finish(req, APP_ERROR)
            return
        ex = cls(self, req, *args)
        self.requests[req] = ex
        task = ex.task = self.loop.create_task(ex.run())
        task.add_done_callback(ex.done)
        if self.request_timeout > 0 and cls is _Request:
            # No timer per request (a libuv timer each under uvloop): one
            # sweep a quarter second checks every request's deadline.
            ex.deadline = self.loop.time() + self.request_timeout

    def on_ws_message(self, event):
        ws = self.requests.get(event[1])
        if ws is not None:
            ws.on_message(event[2], event[3])

    def on_ws_close(self, event):
        ws = self.requests.get(event[1])
        if ws is not None:
            ws.on_close(event[2], event[3])

    def on_body(self, event):
        r = self.requests.get(event[1])
        if r is not None:  # None: already finished, its events are stale
            r.on_body(event[2], event[3])

    def on_disconnect(self, event):
        r = self.requests.get(event[1])
        if r is not None:
            r.on_disconnect()

    def on_sent(self, event):
        r = self.requests.get(event[1])
        if r is not None:
            r.on_sent(event[2])

    def on_shutdown(self, event):
        if self.stop_fut is not None and not self.stop_fut.done():
            self.stop_fut.set_result(None)

    def sweep_timeouts(self):
        """request_timeout's watch: cancels the requests past their
        deadline, then looks again TIMEOUT_TICK seconds later."""
        now = self.loop.time()
        for r in list(self.requests.values()):
            if r.deadline and now >= r.deadline:
                r.on_timeout()
        self.loop.call_later(TIMEOUT_TICK, self.sweep_timeouts)

    def on_abandon(self, event):
        """Go's deadline for the running requests (grace_period, or the stop
        bound) passed: every one still running is cancelled now and ends as
        STOPPED (503, or an aborted response), whether or not the drain began."""
        self.abandoning = True
        for r in list(self.requests.values()):
            r.stop(STOPPED)

    def forget(self, req):
        self.requests.pop(req, None)
        if not self.requests and self.idle is not None and not self.idle.done():
            # Drained: from now on requests are refused, before the lifespan
            # shutdown runs.
            self.stopping = True
            self.idle.set_result(None)

    # ------------------------------------------------------------ life

    async def main(self):
        loop = self.loop
        loop.add_reader(self.wake_fd, self.on_wake)
        # News for Go is held back while the loop runs requests, and goes out
        # in one wake-up once the loop gets to its next pass.
        _native.asgi_set_flusher(functools.partial(loop.call_soon, _native.asgi_flush))
        try:
            ok, message = await self.lifespan.startup()
            self.ready_sent = True
            _native.asgi_ready(self.handle, ok, message)
            if not ok:
                return
            self.stop_fut = loop.create_future()
            if self.request_timeout > 0:
                loop.call_later(TIMEOUT_TICK, self.sweep_timeouts)
            self.serving = True
            self.drain()  # whatever was queued during startup
            await self.stop_fut
            await self.drain_requests()
            self.stopping = True
            ok, message = await self.lifespan.shutdown()
            self.stopped_sent = True
            _native.asgi_stopped(self.handle, ok, message)
        finally:
            _native.asgi_set_flusher(None)
            loop.remove_reader(self.wake_fd)

    async def drain_requests(self):
        """Lets the requests still running finish: nothing in flight is lost
        on a reload or stop. Requests that arrive meanwhile are served too
        (a kept-alive connection may still carry one). WebSockets are told
        the server is going away. Go bounds the wait: EV_ABANDON cancels
        what is left (each abandoned CANCEL_GRACE seconds later if it
        ignores that), so this ends."""
        if not self.requests:
            self.stopping = True
            return
        self.idle = self.loop.create_future()
        for r in list(self.requests.values()):
            if isinstance(r, _WebSocket):
                r.going_away()
        await self.idle


def _close_loop(loop):
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    except BaseException:  # noqa: B036 - closing is best effort
        pass
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def run_loop(app, app_handle, wake_fd, options):
    """Runs app on a new event loop in the calling thread until it is shut
    down; never raises. Calls asgi_ready exactly once and, if the app
    started, asgi_stopped exactly once."""
    loop = None
    server = None
    try:
        lifespan, kind, startup_timeout, shutdown_timeout, request_timeout = _parse_options(options)
        loop = _new_loop(kind)
        asyncio.set_event_loop(loop)  # for apps that call get_event_loop()
        server = _Server(app, app_handle, wake_fd, loop, lifespan, startup_timeout, shutdown_timeout,
                         request_timeout)
        loop.set_exception_handler(server.loop_exception)
        loop.run_until_complete(server.main())
    except BaseException as exc:  # noqa: B036 - nothing may unwind into the C caller
        if isinstance(exc, _StartupError):
            message = str(exc)
        else:
            message = "the ASGI event loop failed:\n" + "".join(traceback.format_exception(exc))
        try:
            if server is None or not server.ready_sent:
                _native.asgi_ready(app_handle, False, message)
            elif not server.stopped_sent:
                _native.asgi_stopped(app_handle, False, message)
            else:
                _log(app_handle, LOG_ERROR, message)
        except BaseException:  # noqa: B036
            pass
    finally:
        if loop is not None:
            _close_loop(loop)
