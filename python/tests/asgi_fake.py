"""A fake `_caddysnake` for the ASGI side, and a harness that runs
asgi.run_loop on a thread of its own, as the C code does.

The test thread plays Go: it queues events (push) and wakes the loop by
writing to a pipe; the loop thread calls the fake's native functions, which
record everything. Every use that breaks the native contract is recorded in
`violations` (checked at fixture teardown).
"""

import os
import sys
import threading
import time

from caddysnake import asgi, bridge

APP = 7000  # the app handle; request handles are small ints

WS_WINDOW = 16  # Go's initial WebSocket message credits

DEFAULT_OPTIONS = {"lifespan": "off", "loop": "asyncio", "startup_timeout": 5.0, "shutdown_timeout": 5.0}


def parts(
    method=b"GET",
    path=b"/",
    raw_path=None,
    query_string=b"",
    root_path=b"",
    scheme=b"http",
    http_version=b"1.1",
    client=(b"10.0.0.1", b"54321"),
    server=(b"example.com", b"80"),
    has_body=b"0",
    headers=(),
):
    """An EV_REQUEST parts tuple."""
    p = [
        http_version,
        method,
        scheme,
        path,
        path if raw_path is None else raw_path,
        query_string,
        root_path,
        client[0],
        client[1],
        server[0],
        server[1],
        has_body,
    ]
    for name, value in headers:
        p += [name, value]
    return tuple(p)


class FakeASGINative:
    ClientDisconnected = bridge.ClientDisconnected

    def __init__(self):
        self.cond = threading.Condition()  # an RLock inside: natives may push
        self.queue = []
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)  # like Go's EFD_NONBLOCK eventfd
        os.set_blocking(self.wfd, False)
        self.calls = []  # (name, handle, *args); body bytes are recorded as copies
        self.logs = []  # (handle, level, message)
        self.finished = {}  # req -> code
        self.ready = None  # (ok, message)
        self.stopped = None
        self.auto_complete = True  # answer every send with (3, req, True) at once
        # Behave as C does for an HTTP request with an outbox: asgi_start
        # returns True, asgi_body copies the bytes and returns True (no
        # completion event follows), and the final body ends the request on
        # the Go side (recorded as finished OK: no asgi_finish may follow).
        self.outbox = False
        self.bodies = {}  # req -> [(data, more), ...] answered to asgi_receive in order
        self.outstanding = {}  # req -> what Go would be reading until the completion
        self.released_early = []  # reqs whose send data Python let go before its completion
        self.receiving = set()
        self.dead = set()  # requests whose native calls raise ClientDisconnected
        self.violations = []
        self.drains = 0
        self.credits = {}  # ws req -> messages Go may still push (its read-ahead window)

    # --- the test side (Go)
    def push(self, *event):
        with self.cond:
            self.queue.append(event)
            self.cond.notify_all()
        try:
            os.write(self.wfd, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the loop is readable anyway

    def request(self, req, body=None, **kw):
        """Queues a new request; body (a list of chunks) makes has_body b"1"."""
        if body is not None:
            with self.cond:
                self.bodies[req] = [(c, i < len(body) - 1) for i, c in enumerate(body)] or [(b"", False)]
            kw.setdefault("has_body", b"1")
        self.push(asgi.EV_REQUEST, req, parts(**kw))

    def websocket(self, req, subprotocols=None, scheme=b"ws", headers=(), **kw):
        """Queues a new WebSocket connection (EV_WS_CONNECT); subprotocols
        (a str) becomes a sec-websocket-protocol header."""
        headers = list(headers)
        if subprotocols is not None:
            headers.append((b"sec-websocket-protocol", subprotocols.encode()))
        with self.cond:
            self.credits[req] = WS_WINDOW
        self.push(asgi.EV_WS_CONNECT, req, parts(scheme=scheme, headers=headers, **kw))

    def ws_message(self, req, data):
        """Go reading one client message: str is a text message."""
        with self.cond:
            # Go never reads past the credits Python granted: a test pushing
            # more is wrong itself.
            assert self.credits[req] > 0, "test pushed more messages than Go's window allows"
            self.credits[req] -= 1
        if isinstance(data, str):
            self.push(asgi.EV_WS_MESSAGE, req, data.encode(), True)
        else:
            self.push(asgi.EV_WS_MESSAGE, req, data, False)

    def ws_disconnect(self, req, code=1000, reason=b""):
        self.push(asgi.EV_WS_CLOSE, req, code, reason)

    def complete(self, req, ok=True):
        self.push(asgi.EV_SENT, req, ok)

    def wait(self, predicate, timeout=5.0):
        # Polls too: apps change test state without calling the fake.
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, "timed out waiting"
                self.cond.wait(min(left, 0.005))

    def drained(self, timeout=5.0):
        """Waits until the loop took every queued event. It dispatches them
        all before running any app code, so an app that polls a flag set
        after this sees their effects."""
        self.wait(lambda: not self.queue, timeout)

    def wait_finished(self, req, timeout=5.0):
        self.wait(lambda: req in self.finished, timeout)
        return self.finished[req]

    def calls_for(self, req, *names):
        with self.cond:
            return [c for c in self.calls if c[1] == req and (not names or c[0] in names)]

    def messages(self, level=None, handle=None):
        with self.cond:
            return [m for h, lvl, m in self.logs if (level is None or lvl == level) and (handle is None or h == handle)]

    def close(self):
        os.close(self.rfd)
        os.close(self.wfd)

    # --- the native API (called on the loop thread)
    def _record(self, name, handle, *args):
        self.calls.append((name, handle) + args)
        if handle in self.finished:
            self.violations.append(f"{name} on finished request {handle}")
        self.cond.notify_all()

    def asgi_drain(self, app):
        with self.cond:
            if app != APP:
                self.violations.append(f"asgi_drain({app!r})")
            self.drains += 1
            events, self.queue = self.queue, []
            for ev in events:
                if ev[0] == asgi.EV_SENT:
                    held = self.outstanding.pop(ev[1], None)
                    # Go stops reading now; until here Python must keep the
                    # object alive by itself. Counted: `held` and the argument.
                    if held is not None and sys.getrefcount(held) <= 2:
                        self.released_early.append(ev[1])
            return events

    def asgi_set_flusher(self, flusher):
        self.flusher = flusher

    def asgi_flush(self):
        pass

    def _send(self, name, req, keep, *args):
        with self.cond:
            self._record(name, req, *args)
            if req in self.outstanding:
                self.violations.append(f"{name} on request {req} before the previous send completed")
            self.outstanding[req] = keep
            if self.auto_complete:
                self.push(asgi.EV_SENT, req, True)

    def asgi_start(self, req, status, headers, trailers):
        with self.cond:
            if (
                type(status) is not int
                or type(headers) is not list
                or type(trailers) is not bool
                or not all(
                    type(h) is tuple and len(h) == 2 and type(h[0]) is bytes and type(h[1]) is bytes for h in headers
                )
            ):
                self.violations.append(f"asgi_start({status!r}, {headers!r}, {trailers!r})")
            self._record("start", req, status, list(headers), trailers)
            return True if self.outbox else None

    def asgi_body(self, req, data, more_body):
        if type(data) is not bytes or type(more_body) is not bool:
            self.violations.append(f"asgi_body({type(data).__name__}, {more_body!r})")
        if self.outbox:
            with self.cond:
                self._record("body", req, bytes(bytearray(data)), more_body)
                if not more_body:
                    self.finished[req] = asgi.OK
            return True
        # A copy in the record, so that only Python holds `data` itself.
        self._send("body", req, data, bytes(bytearray(data)), more_body)

    def asgi_pathsend(self, req, path):
        if type(path) is not str:
            self.violations.append(f"asgi_pathsend({path!r})")
        self._send("pathsend", req, path, path)

    def asgi_trailers(self, req, headers, more_trailers):
        self._send("trailers", req, headers, list(headers), more_trailers)

    def asgi_early_hint(self, req, headers):
        with self.cond:
            self._record("early_hint", req, list(headers))

    def ws_accept(self, req, subprotocol, headers):
        if (
            type(subprotocol) is not str
            or type(headers) is not list
            or not all(
                type(h) is tuple and len(h) == 2 and type(h[0]) is bytes and type(h[1]) is bytes for h in headers
            )
        ):
            self.violations.append(f"ws_accept({subprotocol!r}, {headers!r})")
        self._send("ws_accept", req, headers, subprotocol, list(headers))

    def ws_send(self, req, data, is_text):
        if type(data) is not bytes or type(is_text) is not bool:
            self.violations.append(f"ws_send({type(data).__name__}, {is_text!r})")
        self._send("ws_send", req, data, bytes(bytearray(data)), is_text)

    def ws_close(self, req, code, reason):
        if type(code) is not int or type(reason) is not str:
            self.violations.append(f"ws_close({code!r}, {reason!r})")
        self._send("ws_close", req, reason, code, reason)

    def ws_receive(self, req):
        with self.cond:
            self._record("ws_receive", req)
            if req in self.dead:
                raise self.ClientDisconnected("request is gone")
            if self.credits.get(req, WS_WINDOW) >= WS_WINDOW:
                self.violations.append(f"ws_receive on {req} grants a credit for no delivered message")
            else:
                self.credits[req] += 1

    def asgi_receive(self, req):
        with self.cond:
            self._record("receive", req)
            if req in self.dead:
                raise self.ClientDisconnected("request is gone")
            if req in self.receiving:
                self.violations.append(f"second asgi_receive outstanding on {req}")
            self.receiving.add(req)
            chunks = self.bodies.get(req)
            if chunks:
                data, more = chunks.pop(0)
                self.answer_receive(req, data, more)

    def answer_receive(self, req, data, more):
        with self.cond:
            self.receiving.discard(req)
            self.push(asgi.EV_BODY, req, data, more)

    def asgi_finish(self, req, code):
        with self.cond:
            self._record("finish", req, code)
            if req in self.outstanding:
                self.violations.append(f"asgi_finish({req}) while a send is outstanding")
            self.finished[req] = code

    def asgi_ready(self, app, ok, message):
        with self.cond:
            if self.ready is not None:
                self.violations.append("asgi_ready called twice")
            self.ready = (ok, message)
            self.calls.append(("ready", app, ok, message))
            self.cond.notify_all()

    def asgi_stopped(self, app, ok, message):
        with self.cond:
            if self.stopped is not None:
                self.violations.append("asgi_stopped called twice")
            self.stopped = (ok, message)
            self.calls.append(("stopped", app, ok, message))
            self.cond.notify_all()

    def log(self, handle, level, message):
        with self.cond:
            if type(level) is not int or type(message) is not str:
                self.violations.append(f"log({level!r}, {message!r})")
            self.logs.append((handle, level, message))
            self.cond.notify_all()


class Running:
    """asgi.run_loop(app, ...) on a thread of its own."""

    def __init__(self, fake, app, **options):
        self.fake = fake
        opts = dict(DEFAULT_OPTIONS, **options)
        self.errors = []
        self.thread = threading.Thread(target=self._run, args=(app, opts), daemon=True)
        self.thread.start()

    def _run(self, app, opts):
        try:
            asgi.run_loop(app, APP, self.fake.rfd, opts)
        except BaseException as exc:  # run_loop must never raise
            self.errors.append(exc)

    def wait_ready(self):
        self.fake.wait(lambda: self.fake.ready is not None)
        return self.fake.ready

    def join(self, timeout=10.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run_loop did not return"
        assert self.errors == []

    def stop(self, drain=False):
        """Shutdown as Go orders it: EV_SHUTDOWN drains the requests; unless
        drain, Go's deadline for them (EV_ABANDON) follows at once."""
        self.fake.push(asgi.EV_SHUTDOWN, 0)
        if not drain:
            self.fake.push(asgi.EV_ABANDON, 0)
        self.join()
        return self.fake.stopped
