"""The server loop: one app's event loop on a thread of its own. It drains
the inbox when the wake-up fd says news waits, dispatches each event to its
exchange, checks request_timeout, and runs the lifespan around it all.
"""

import asyncio
import functools
import os
import sys
import traceback

from .. import bridge
from ..bridge import LOG_ERROR, LOG_WARNING
from ..codes import (
    APP_ERROR,
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
    STOPPED,
)
from ..loader import subinterpreter_refusal
from .asgi2 import as_asgi3
from .http import Request
from .lifespan import Lifespan
from .scope import c_request_args, request_args, websocket_args
from .websocket import WebSocket

# How often request_timeout is checked: a request is cancelled at most this
# much after its deadline (request_timeout is at least 1 s).
TIMEOUT_TICK = 0.25


class _StartupError(Exception):
    """A problem found before the app runs; the message goes to asgi_ready."""


def _new_loop(kind, venv=""):
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
        where = f"in {venv}" if venv else f"in {sys.prefix} (no venv is set)"
        raise _StartupError(
            f"loop uvloop: uvloop is not installed {where}: pip install uvloop, or use loop asyncio (or auto)"
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
    return lifespan, loop, startup_timeout, shutdown_timeout, request_timeout, options.get("venv", "")


class Server:
    """One app's event loop side: dispatches events, owns the requests."""

    def __init__(
        self, app, handle, wake_fd, loop, lifespan_mode, startup_timeout, shutdown_timeout, request_timeout=0.0
    ):
        self.app = as_asgi3(app)
        self.handle = handle
        self.wake_fd = wake_fd
        self.loop = loop
        self.state = {}
        self.lifespan = Lifespan(self.app, lifespan_mode, self.state, startup_timeout, shutdown_timeout, self.log)
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
        bridge.log(self.handle, level, message)

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
                events = bridge.native.asgi_drain(self.handle)
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
                    self.log(
                        LOG_ERROR,
                        f"handling ASGI event {event[0]!r} failed:\n" + "".join(traceback.format_exception(exc)),
                    )
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
        self._open(event, "request", request_args, Request)

    def on_request_scope(self, event):
        self._open(event, "request", c_request_args, Request)

    def on_ws_connect(self, event):
        self._open(event, "websocket", websocket_args, WebSocket)

    def _open(self, event, what, build, cls):
        """Starts the app's task for a new HTTP request or WebSocket: build
        turns the event into the exchange's constructor arguments."""
        req = event[1]
        if self.stopping or self.abandoning:
            bridge.log(req, LOG_WARNING, f"{what} arrived after the ASGI app stopped serving: 503")
            bridge.native.asgi_finish(req, STOPPED)
            return
        try:
            args = build(event, self.state)
        except Exception as exc:
            bridge.log(req, LOG_ERROR, f"bad ASGI {what} from the native side: {exc!r}")
            bridge.native.asgi_finish(req, APP_ERROR)
            return
        ex = cls(self, req, *args)
        self.requests[req] = ex
        task = ex.task = self.loop.create_task(ex.run())
        task.add_done_callback(ex.done)
        if self.request_timeout > 0 and cls is Request:
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
        bridge.native.asgi_set_flusher(functools.partial(loop.call_soon, bridge.native.asgi_flush))
        try:
            ok, message = await self.lifespan.startup()
            self.ready_sent = True
            bridge.native.asgi_ready(self.handle, ok, message if ok else f"lifespan startup failed: {message}")
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
            bridge.native.asgi_stopped(self.handle, ok, message)
        finally:
            bridge.native.asgi_set_flusher(None)
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
            if isinstance(r, WebSocket):
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
        lifespan, kind, startup_timeout, shutdown_timeout, request_timeout, venv = _parse_options(options)
        loop = _new_loop(kind, venv)
        asyncio.set_event_loop(loop)  # for apps that call get_event_loop()
        server = Server(app, app_handle, wake_fd, loop, lifespan, startup_timeout, shutdown_timeout, request_timeout)
        loop.set_exception_handler(server.loop_exception)
        loop.run_until_complete(server.main())
    except BaseException as exc:  # noqa: B036 - nothing may unwind into the C caller
        if isinstance(exc, _StartupError):
            message = str(exc)
        else:
            message = "the ASGI event loop failed:\n" + "".join(traceback.format_exception(exc))
        try:
            if server is None or not server.ready_sent:
                bridge.native.asgi_ready(app_handle, False, message)
            elif not server.stopped_sent:
                bridge.native.asgi_stopped(app_handle, False, message)
            else:
                bridge.log(app_handle, LOG_ERROR, message)
        except BaseException:  # noqa: B036
            pass
    finally:
        if loop is not None:
            _close_loop(loop)
