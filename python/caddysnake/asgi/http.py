"""One HTTP request (ASGI HTTP spec 2.5): the app's receive() and send().

The request body comes in lazily, one chunk per receive() (asgi_receive,
answered by EV_BODY); the response goes to the request's outbox (asgi_start,
asgi_body, asgi_pathsend, asgi_trailers).
"""

import os

from .. import bridge
from ..bridge import LOG_ERROR, ClientDisconnected
from ..codes import APP_ERROR, APP_ERROR_AFTER_START, TIMED_OUT
from .exchange import Exchange, byte_pairs, to_bytes


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


class Request(Exchange):
    """One HTTP request: the app's task, its receive() and send()."""

    _KIND = "request"
    _APP = "app"

    __slots__ = (
        # request body
        "expect_body",
        "body_done",
        "receiving",
        "buffered",
        # response
        "response_started",
        "trailers",
        "trailers_pending",
        # ending
        "disconnected",
    )

    def __init__(self, server, handle, scope, expect_body):
        Exchange.__init__(self, server, handle, scope)
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
        return self.disconnected or Exchange._client_left(self, exc)

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
            bridge.log(self.handle, LOG_ERROR, "ASGI callable returned without starting response")
            return APP_ERROR
        bridge.log(self.handle, LOG_ERROR, "ASGI callable returned without completing response")
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
        bridge.log(
            self.handle,
            LOG_ERROR,
            f"ASGI request timed out after {self.server.request_timeout:g}s (request_timeout): "
            f"{self._what()}; cancelling it. It was waiting in:\n{where}",
        )
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
        self._abandon_after_grace()

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
                    bridge.native.asgi_receive(self.handle)
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
                f"http.response.start 'status' must be 200-999, got {status} (send 103 with http.response.early_hint)"
            )
        headers = byte_pairs(message.get("headers", ()), "http.response.start")
        trailers = bool(message.get("trailers", False))
        self._call(bridge.native.asgi_start, status, headers, trailers)
        self.response_started = True
        self.trailers = trailers

    def _early_hint(self, message):
        # The http.response.early_hint extension: a 103 before the response,
        # carrying the message's "links" as Link headers (RFC 8297).
        links = message.get("links", ())
        if isinstance(links, (bytes, str)) or not all(isinstance(link, bytes) for link in links):
            raise TypeError("http.response.early_hint 'links' must be an iterable of bytes")
        self._call(bridge.native.asgi_early_hint, [(b"link", link) for link in links])

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
            body = to_bytes(body, "http.response.body 'body'")
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
        if self._call(bridge.native.asgi_body, body, more):
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
        self._call(bridge.native.asgi_pathsend, path)
        self.sending = path
        await self._completion()

    async def _send_trailers(self, message):
        # The http.response.trailers extension.
        headers = byte_pairs(message.get("headers", ()), "http.response.trailers")
        more = bool(message.get("more_trailers", False))
        await self._ready()
        if not more:
            self.trailers_pending = False
            self._end_of_response()
        self._call(bridge.native.asgi_trailers, headers, more)
        self.sending = headers
        await self._completion()
