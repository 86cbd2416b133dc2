"""A fake `_caddysnake` native module, put in as caddysnake.bridge.native."""

import os
import sys
from dataclasses import dataclass, field

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from caddysnake import bridge, wsgi  # noqa: E402


@dataclass
class Body:
    data: bytes
    pos: int = 0
    piece: int | None = None  # at most this many bytes per read (short reads)
    fail_at: int | None = None  # raise RequestBodyError once pos reaches it


@dataclass
class Call:
    kind: str  # "write" or "sendfile"
    handle: int
    status: int
    headers: list | None
    data: bytes = b""  # for sendfile: the file bytes it would send
    flush: bool = False
    fd: int = -1
    offset: int = 0
    count: int = 0


@dataclass
class Response:
    status: int | None = None
    headers: list = field(default_factory=list)
    body: bytes = b""
    calls: list = field(default_factory=list)

    def header(self, name):
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None


class FakeNative:
    """Behaves like _caddysnake and records everything; any use that breaks
    the native contract is recorded in `violations` (checked at teardown)."""

    ClientDisconnected = bridge.ClientDisconnected
    RequestBodyError = bridge.RequestBodyError

    def __init__(self):
        self.bodies = {}
        self.read_sizes = []
        self.read1_sizes = []  # the reads that may return early (readline)
        self.calls = []
        self.logs = []
        self.disconnect_after = None  # writes allowed before ClientDisconnected
        self.violations = []
        self._started = set()

    def set_body(self, handle, data, piece=None, fail_at=None):
        self.bodies[handle] = Body(data, piece=piece, fail_at=fail_at)

    # --- the native API
    def read1(self, handle, size):
        # The fake's read already returns what one piece holds.
        self.read1_sizes.append(size)
        return self.read(handle, size)

    def read(self, handle, size):
        if type(size) is not int or size < 0:
            self.violations.append(f"read size {size!r}")
            raise ValueError("read size must be >= 0")
        self.read_sizes.append(size)
        body = self.bodies.setdefault(handle, Body(b""))
        if body.fail_at is not None and body.pos >= body.fail_at:
            raise self.RequestBodyError("malformed chunked body")
        n = size
        if body.piece is not None:
            n = min(n, body.piece)
        if body.fail_at is not None:
            n = min(n, body.fail_at - body.pos)
        data = body.data[body.pos : body.pos + n]
        body.pos += len(data)
        return data

    def _start(self, handle, headers):
        first = handle not in self._started
        if first != (headers is not None):
            self.violations.append(f"headers={headers!r} on {'first' if first else 'later'} call")
        if headers is not None:
            if type(headers) is not list or not all(
                type(h) is tuple and len(h) == 2 and all(type(s) is str for s in h) for h in headers
            ):
                self.violations.append(f"bad headers {headers!r}")
        if self.disconnect_after is not None and len(self.calls) >= self.disconnect_after:
            raise self.ClientDisconnected("client went away")
        self._started.add(handle)

    def write(self, handle, status, headers, data, flush):
        self._start(handle, headers)
        self.calls.append(
            Call("write", handle, status, list(headers) if headers is not None else None, bytes(data), flush)
        )

    def sendfile(self, handle, status, headers, fd, offset, count):
        self._start(handle, headers)
        size = os.fstat(fd).st_size
        n = size - offset if count == -1 else min(count, size - offset)
        data = os.pread(fd, n, offset)
        self.calls.append(
            Call(
                "sendfile",
                handle,
                status,
                list(headers) if headers is not None else None,
                data,
                True,
                fd,
                offset,
                count,
            )
        )
        return len(data)

    def log(self, handle, level, message):
        if type(level) is not int or type(message) is not str:
            self.violations.append(f"log({level!r}, {message!r})")
        self.logs.append((handle, level, message))

    # --- helpers for tests
    def response(self, handle=1):
        r = Response()
        for c in self.calls:
            if c.handle != handle:
                continue
            r.calls.append(c)
            if c.headers is not None:
                r.status = c.status
                r.headers = c.headers
            r.body += c.data
        return r

    def errors(self, handle=1):
        return [m for h, lvl, m in self.logs if h == handle and lvl == 3]


@pytest.fixture
def native(monkeypatch):
    fake = FakeNative()
    monkeypatch.setattr(bridge, "native", fake)
    yield fake
    assert fake.violations == []


def make_req(
    method="GET",
    path="/",
    query="",
    headers=(),
    script_name="",
    protocol="HTTP/1.1",
    scheme="http",
    server_name="example.com",
    server_port="80",
    remote_addr="10.0.0.1",
    remote_port="54321",
):
    req = [method, script_name, path, query, protocol, scheme, server_name, server_port, remote_addr, remote_port]
    for name, value in headers:
        req += [name, value]
    return tuple(req)


@pytest.fixture
def run(native):
    """run(app, body=b"", **make_req kwargs) -> (code, Response)"""

    def _run(app, body=b"", handle=1, piece=None, fail_at=None, **kw):
        native.set_body(handle, body, piece=piece, fail_at=fail_at)
        code = wsgi.serve(app, make_req(**kw), handle)
        if type(code) is tuple:
            # A whole response handed back: the C side writes it (one
            # write with headers, not flushed) or copies it out to Go.
            code, status, headers, body = code
            native.write(handle, status, headers, body, False)
        return code, native.response(handle)

    return _run


# ---------------------------------------------------------------- ASGI


@pytest.fixture
def asgi_native(monkeypatch):
    from asgi_fake import FakeASGINative

    fake = FakeASGINative()
    monkeypatch.setattr(bridge, "native", fake)
    fake.running = []
    yield fake
    for r in fake.running:
        if r.thread.is_alive():
            r.stop()
    fake.close()
    assert fake.violations == []
    assert fake.released_early == []


@pytest.fixture
def start(asgi_native):
    """start(app, **options) -> asgi_fake.Running (run_loop on a thread)."""
    from asgi_fake import Running

    def _start(app, **options):
        r = Running(asgi_native, app, **options)
        asgi_native.running.append(r)
        return r

    return _start


@pytest.fixture
def serve(start):
    """serve(app, **options): start() and wait for a successful startup."""

    def _serve(app, **options):
        r = start(app, **options)
        assert r.wait_ready() == (True, "")
        return r

    return _serve
