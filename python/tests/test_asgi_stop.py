"""Reload and stop drain the requests in flight; request_timeout and Go's
stop deadline cancel them, and never let a cut response pass as complete."""

import asyncio
import threading
import time

import pytest

from caddysnake import asgi


async def respond(send, body=b"done"):
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": body})


def test_shutdown_lets_running_requests_finish(asgi_native, serve):
    # A reload must not cut what is already running: the request ends as
    # the app wrote it, and only then does the lifespan shutdown run.
    order = []
    started = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            order.append("lifespan.shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        started.set()
        await asyncio.sleep(0.3)
        await respond(send)
        order.append("responded")

    r = serve(app, lifespan="on")
    asgi_native.request(1)
    assert started.wait(5)
    assert r.stop(drain=True) == (True, "")
    assert order == ["responded", "lifespan.shutdown"]
    assert [c[0] for c in asgi_native.calls_for(1)] == ["start", "body", "finish"]
    assert asgi_native.finished[1] == asgi.OK
    assert asgi_native.messages(level=asgi.LOG_ERROR) == []


def test_requests_arriving_while_draining_are_served(asgi_native, serve):
    # A kept-alive connection may still bring one after the reload began.
    release = threading.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            while not release.is_set():
                await asyncio.sleep(0.005)
        await respond(send)

    r = serve(app)
    asgi_native.request(1, path=b"/slow")
    asgi_native.drained()
    asgi_native.push(asgi.EV_SHUTDOWN, 0)
    asgi_native.drained()
    asgi_native.request(2)
    asgi_native.wait(lambda: asgi_native.calls_for(2, "body"))
    release.set()
    r.join()
    assert [c[0] for c in asgi_native.calls_for(1)] == ["start", "body", "finish"]
    assert asgi_native.finished[1] == asgi.OK
    assert asgi_native.finished.get(2, asgi.OK) == asgi.OK  # it completed


def test_requests_after_the_drain_get_stopped(asgi_native, serve):
    # Once drained, the lifespan shutdown runs: a request then is refused as
    # STOPPED (Go: 503), never as an app error (500).
    in_shutdown = threading.Event()
    release = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            in_shutdown.set()
            while not release.is_set():
                await asyncio.sleep(0.005)
            await send({"type": "lifespan.shutdown.complete"})
            return
        await respond(send)

    r = serve(app, lifespan="on")
    asgi_native.push(asgi.EV_SHUTDOWN, 0)
    assert in_shutdown.wait(5)
    asgi_native.request(3)
    assert asgi_native.wait_finished(3) == asgi.STOPPED
    release.set()
    r.join()


def test_abandon_cancels_and_never_reports_complete(asgi_native, serve):
    started = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        started.set()
        await asyncio.Event().wait()

    r = serve(app)
    asgi_native.request(1)
    assert started.wait(5)
    assert r.stop() == (True, "")  # EV_SHUTDOWN, then Go's deadline: EV_ABANDON
    assert asgi_native.finished[1] == asgi.STOPPED


def test_task_swallowing_cancellation_is_abandoned(asgi_native, serve, monkeypatch):
    monkeypatch.setattr(asgi.exchange, "CANCEL_GRACE", 0.2)
    stubborn = threading.Event()
    release = threading.Event()

    async def app(scope, receive, send):
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                stubborn.set()  # and carries on regardless

    r = serve(app)
    asgi_native.request(1)
    asgi_native.drained()
    asgi_native.push(asgi.EV_ABANDON, 0)
    assert stubborn.wait(5)
    t0 = time.monotonic()
    assert asgi_native.wait_finished(1, timeout=5) == asgi.STOPPED
    assert time.monotonic() - t0 < 2
    assert any("still running" in m and "GET /" in m for m in asgi_native.messages(level=asgi.LOG_ERROR))
    release.set()
    r.stop()


async def _stuck_in_view():
    await asyncio.Event().wait()


def test_request_timeout_cancels_and_names_where_it_waited(asgi_native, serve):
    async def app(scope, receive, send):
        if scope["path"] == "/ok":
            await respond(send)
            return
        await _stuck_in_view()

    r = serve(app, request_timeout=0.2)
    asgi_native.request(1, path=b"/stuck")
    asgi_native.request(2, path=b"/ok")
    assert asgi_native.wait_finished(1) == asgi.TIMED_OUT
    assert asgi_native.finished.get(2, asgi.OK) == asgi.OK  # answered in time: complete
    [msg] = [m for m in asgi_native.messages(level=asgi.LOG_ERROR) if "timed out" in m]
    assert "GET /stuck" in msg and "_stuck_in_view" in msg and "request_timeout" in msg
    r.stop()


def test_request_timeout_spares_a_streaming_response(asgi_native, serve):
    release = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"event: 1\n\n", "more_body": True})
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})

    r = serve(app, request_timeout=0.1)
    asgi_native.request(1)
    time.sleep(0.4)
    assert 1 not in asgi_native.finished
    release.set()
    asgi_native.wait(lambda: len(asgi_native.calls_for(1, "body")) == 2)
    r.stop()
    assert asgi_native.finished.get(1, asgi.OK) == asgi.OK


@pytest.mark.parametrize("timeout", [0, 0.0])
def test_no_request_timeout_when_off(asgi_native, serve, timeout):
    done = threading.Event()

    async def app(scope, receive, send):
        await asyncio.sleep(0.2)
        await respond(send)
        done.set()

    r = serve(app, request_timeout=timeout)
    asgi_native.request(1)
    assert done.wait(5)
    r.stop()
    assert asgi_native.finished.get(1, asgi.OK) == asgi.OK


def test_task_swallowing_a_disconnect_cancellation_is_abandoned(asgi_native, serve, monkeypatch):
    # The client left while nobody waited on receive(): the task is
    # cancelled; if it carries on, the request still ends (client gone), so
    # Go lets go of the connection instead of holding it in CLOSE_WAIT.
    monkeypatch.setattr(asgi.exchange, "CANCEL_GRACE", 0.2)
    stubborn = threading.Event()
    release = threading.Event()

    async def app(scope, receive, send):
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                stubborn.set()

    r = serve(app)
    asgi_native.request(1)
    asgi_native.drained()
    asgi_native.push(asgi.EV_DISCONNECT, 1)
    assert stubborn.wait(5)
    assert asgi_native.wait_finished(1, timeout=5) == asgi.CLIENT_GONE
    assert any("still running" in m for m in asgi_native.messages(level=asgi.LOG_ERROR))
    release.set()
    r.stop()
