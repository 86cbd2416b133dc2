"""What an HTTP request and a WebSocket connection share: the app's task, how
it ends (asgi_finish's code), and sends, one at a time, whose bytes Go reads
from the outbox until their completion event (EV_SENT).
"""

import asyncio
import traceback

from .. import bridge
from ..bridge import LOG_DEBUG, LOG_ERROR, LOG_WARNING, ClientDisconnected
from ..codes import CLIENT_GONE, OK, STOPPED

# How long a task cancelled by the server (request_timeout, stop) may take
# to end: one that swallows its CancelledError is then abandoned, finished
# as STOPPED / TIMED_OUT, so its client and Caddy's shutdown wait no longer.
CANCEL_GRACE = 3.0

# Sends abandoned at shutdown whose completion never came: Go may still be
# reading their bytes, so they are never freed.
_abandoned = []


def to_bytes(value, what):
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Exactly bytes: the Go side reads the object's memory directly.
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


def byte_pairs(headers, what):
    out = []
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"{what} headers must be [name, value] pairs of bytes, got {item!r}") from None
        if type(name) is not bytes or type(value) is not bytes:
            name = to_bytes(name, f"{what} header name")
            value = to_bytes(value, f"{what} header value")
        out.append((name, value))
    return out


class Exchange:
    """What an HTTP request and a WebSocket connection share: the app's task
    and how it ends, and sends, one at a time, whose bytes Go reads until
    their completion event.

    A subclass provides receive() and send(), `disconnected`, and the hooks:
    _wake() (answers a waiting receive()), _lost() (a failed completion: the
    client is gone), _refused() (a native call raised ClientDisconnected),
    _where() and _unfinished_code(); _KIND and _APP name it in log messages.
    """

    __slots__ = (
        "server",
        "handle",
        "scope",
        "task",
        "waiter",
        # send
        "ended",
        "end_ok",
        "sending",
        "send_fut",
        # ending
        "cancelled",
        "gone",
        "error",
        "task_done",
        "finished",
        "stop_code",
        "deadline",
        # the native side
        "outbox",
        "handed_off",
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
            bridge.log(self.handle, LOG_WARNING, f"ASGI callable should return None, but returned {result!r}")

    def _client_left(self, exc):
        """Whether exc ended the task because the client left, not an app bug."""
        return isinstance(exc, ClientDisconnected) or (
            (self.cancelled or self.stop_code is not None) and isinstance(exc, asyncio.CancelledError)
        )

    def _failed(self, exc):
        if self._client_left(exc):
            self.gone = True
            bridge.log(self.handle, LOG_DEBUG, f"ASGI {self._KIND} ended, client disconnected: {exc!r}")
            return
        self.error = True
        where = self._where()
        tb = "".join(traceback.format_exception(exc))
        bridge.log(self.handle, LOG_ERROR, f"ASGI {self._APP} raised an exception{where}:\n{tb}")

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
            bridge.native.asgi_finish(handle, code)
        except BaseException as exc:  # noqa: B036
            bridge.log(self.server.handle, LOG_ERROR, f"asgi_finish failed: {exc!r}")

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
        self._abandon_after_grace()
        self._finish()

    def _abandon_after_grace(self):
        # In the base class, so CANCEL_GRACE has one home (tests shorten it).
        self.server.loop.call_later(CANCEL_GRACE, self._overdue)

    def _overdue(self):
        if self.finished:
            return
        bridge.log(
            self.handle,
            LOG_ERROR,
            f"ASGI {self._KIND} {self._what()} still running {CANCEL_GRACE:g}s after it was cancelled "
            f"(it swallows CancelledError?): abandoned, its connection closed",
        )
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
