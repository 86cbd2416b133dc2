"""Lifespan (spec 2.0), run_loop's start-up options and shutdown."""

import asyncio
import sys
import threading
import time
import types

import pytest

from caddysnake import asgi


async def ok_response(send, body=b"ok"):
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": body})


def lifespan_app(on_startup=None, on_shutdown=None, record=None):
    """An app with a lifespan handler; on_* return a message to send or raise."""
    record = record if record is not None else []

    async def app(scope, receive, send):
        if scope["type"] == "http":
            record.append(("http", dict(scope["state"])))
            scope["state"]["leak"] = True  # must not reach other requests
            await ok_response(send)
            return
        record.append(("lifespan", scope["asgi"]))
        msg = await receive()
        record.append(msg["type"])
        reply = await on_startup(scope) if on_startup else {"type": "lifespan.startup.complete"}
        await send(reply)
        msg = await receive()
        record.append(msg["type"])
        reply = await on_shutdown(scope) if on_shutdown else {"type": "lifespan.shutdown.complete"}
        await send(reply)

    app.record = record
    return app


async def set_state(scope):
    scope["state"]["db"] = "pool"
    return {"type": "lifespan.startup.complete"}


def test_lifespan_on_startup_state_and_shutdown(asgi_native, start):
    app = lifespan_app(on_startup=set_state)
    r = start(app, lifespan="on")
    assert r.wait_ready() == (True, "")
    asgi_native.request(1)
    asgi_native.request(2)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert asgi_native.wait_finished(2) == asgi.OK
    assert r.stop() == (True, "")
    assert app.record == [
        ("lifespan", {"version": "3.0", "spec_version": "2.0"}),
        "lifespan.startup",
        ("http", {"db": "pool"}),
        ("http", {"db": "pool"}),  # the first request's "leak" stayed in its copy
        "lifespan.shutdown",
    ]


def test_shutdown_runs_once(asgi_native, serve):
    app = lifespan_app()
    r = serve(app, lifespan="auto")
    asgi_native.push(asgi.EV_SHUTDOWN, 0)
    assert r.stop() == (True, "")  # a second shutdown event is ignored
    assert app.record.count("lifespan.shutdown") == 1
    assert [c[0] for c in asgi_native.calls if c[0] in ("ready", "stopped")] == ["ready", "stopped"]


def test_lifespan_off_never_calls_the_app(asgi_native, serve):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        await ok_response(send)

    r = serve(app, lifespan="off")
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert r.stop() == (True, "")
    assert calls == ["http"]


@pytest.mark.parametrize("style", ["raises", "returns"])
def test_auto_continues_without_lifespan_when_unsupported(asgi_native, serve, style):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        if scope["type"] != "http":
            if style == "raises":
                raise ValueError("unknown scope type lifespan")
            return
        await ok_response(send)

    r = serve(app, lifespan="auto")
    infos = asgi_native.messages(level=1, handle=7000)
    assert len(infos) == 1 and "lifespan protocol appears unsupported" in infos[0]
    if style == "raises":
        assert "ValueError: unknown scope type lifespan" in infos[0]
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert r.stop() == (True, "")
    assert calls == ["lifespan", "http"]  # no shutdown call after an unsupported startup


def test_on_exception_fails_startup_with_traceback(asgi_native, start):
    async def app(scope, receive, send):
        await receive()
        raise RuntimeError("no database")

    r = start(app, lifespan="on")
    ok, message = r.wait_ready()
    r.join()  # run_loop returns after a failed startup
    assert ok is False
    assert "Traceback (most recent call last)" in message and "RuntimeError: no database" in message
    assert asgi_native.stopped is None


def test_on_requires_an_answer(asgi_native, start):
    async def app(scope, receive, send):
        return None

    r = start(app, lifespan="on")
    ok, message = r.wait_ready()
    r.join()
    assert ok is False and "without sending lifespan.startup.complete" in message


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_failed_message_is_passed_through(asgi_native, start, mode):
    async def fail(scope):
        return {"type": "lifespan.startup.failed", "message": "cannot reach redis"}

    r = start(lifespan_app(on_startup=fail), lifespan=mode)
    # Prefixed here, not by Go: only the lifespan's own failures are lifespan failures.
    assert r.wait_ready() == (False, "lifespan startup failed: cannot reach redis")
    r.join()


def test_wrong_lifespan_message_names_the_expected_ones(asgi_native, start):
    async def wrong(scope):
        return {"type": "lifespan.shutdown.complete"}

    r = start(lifespan_app(on_startup=wrong), lifespan="on")
    ok, message = r.wait_ready()
    r.join()
    assert ok is False
    assert (
        "Expected ASGI message 'lifespan.startup.complete' or 'lifespan.startup.failed', "
        "but got 'lifespan.shutdown.complete'."
    ) in message


def test_startup_timeout(asgi_native, start):
    async def slow(scope):
        await asyncio.sleep(30)

    r = start(lifespan_app(on_startup=slow), lifespan="auto", startup_timeout=0.1)
    ok, message = r.wait_ready()
    r.join()
    assert ok is False and "within 0.1 seconds (startup_timeout)" in message


def test_shutdown_failed(asgi_native, serve):
    async def fail(scope):
        return {"type": "lifespan.shutdown.failed", "message": "flush failed"}

    assert serve(lifespan_app(on_shutdown=fail), lifespan="on").stop() == (False, "flush failed")


def test_shutdown_timeout(asgi_native, serve):
    async def slow(scope):
        await asyncio.sleep(30)

    r = serve(lifespan_app(on_shutdown=slow), lifespan="on", shutdown_timeout=0.1)
    ok, message = r.stop()
    assert ok is False and "within 0.1 seconds (shutdown_timeout)" in message


def test_shutdown_exception(asgi_native, serve):
    async def boom(scope):
        raise OSError("disk gone")

    ok, message = serve(lifespan_app(on_shutdown=boom), lifespan="on").stop()
    assert ok is False and "OSError: disk gone" in message and "Traceback" in message


def test_shutdown_cancels_running_requests_first(asgi_native, serve):
    seen = {}
    started = threading.Event()

    async def on_shutdown(scope):
        seen["finished_before_lifespan_shutdown"] = dict(asgi_native.finished)
        return {"type": "lifespan.shutdown.complete"}

    app = lifespan_app(on_shutdown=on_shutdown)

    async def outer(scope, receive, send):
        if scope["type"] == "http":
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise
        await app(scope, receive, send)

    r = serve(outer, lifespan="on")
    asgi_native.request(1)
    assert started.wait(5)
    assert r.stop() == (True, "")
    # Cancelled by the server, never "complete": Go answers 503.
    assert seen == {"cancelled": True, "finished_before_lifespan_shutdown": {1: asgi.STOPPED}}


def test_requests_queued_during_startup_wait_for_it(asgi_native, start):
    gate = threading.Event()
    record = []

    async def slow_start(scope):
        while not gate.is_set():
            await asyncio.sleep(0.005)
        return await set_state(scope)

    r = start(lifespan_app(on_startup=slow_start, record=record), lifespan="on")
    asgi_native.request(1)
    asgi_native.wait(lambda: "lifespan.startup" in record)
    time.sleep(0.05)  # time for the loop to see the wake-up
    assert asgi_native.drains == 0 and asgi_native.finished == {}  # not dispatched during startup
    gate.set()
    assert r.wait_ready() == (True, "")
    assert asgi_native.wait_finished(1) == asgi.OK
    assert ("http", {"db": "pool"}) in record


# ---------------------------------------------------------------- loop option


def test_uvloop_missing_is_a_clear_startup_failure(asgi_native, start, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    r = start(lifespan_app(), loop="uvloop")
    ok, message = r.wait_ready()
    r.join()
    assert ok is False and "pip install uvloop" in message and "venv" in message


def test_auto_loop_falls_back_to_asyncio(asgi_native, serve, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)
    seen = []

    async def app(scope, receive, send):
        seen.append(type(asyncio.get_running_loop()).__module__)
        await ok_response(send)

    serve(app, loop="auto")
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert seen[0].startswith("asyncio")


@pytest.mark.parametrize("kind", ["uvloop", "auto"])
def test_uvloop_is_used_when_installed(asgi_native, serve, monkeypatch, kind):
    made = []

    def new_event_loop():
        loop = asyncio.new_event_loop()
        made.append(loop)
        return loop

    monkeypatch.setitem(sys.modules, "uvloop", types.SimpleNamespace(new_event_loop=new_event_loop))
    seen = []

    async def app(scope, receive, send):
        seen.append(asyncio.get_running_loop())
        await ok_response(send)

    serve(app, loop=kind)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert len(made) == 1 and seen == made


@pytest.mark.parametrize(
    "options, words",
    [
        ({"lifespan": "maybe"}, 'lifespan must be "on", "off" or "auto"'),
        ({"loop": "trio"}, 'loop must be "asyncio", "uvloop" or "auto"'),
    ],
)
def test_bad_options_fail_startup(asgi_native, start, options, words):
    r = start(lifespan_app(), **options)
    ok, message = r.wait_ready()
    r.join()
    assert ok is False and words in message


def test_app_exit_in_lifespan_does_not_escape_run_loop(asgi_native, start):
    async def app(scope, receive, send):
        raise SystemExit(1)

    r = start(app, lifespan="on")
    ok, message = r.wait_ready()
    r.join()  # checks run_loop did not raise
    assert ok is False and "SystemExit" in message
