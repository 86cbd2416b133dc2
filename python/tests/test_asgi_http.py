"""HTTP requests through asgi.run_loop, against the fake native module."""

import asyncio
import os
import threading
import time

import pytest
from asgi_fake import parts

from caddysnake import ClientDisconnected, asgi

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}


def respond(body=b"hello"):
    async def app(scope, receive, send):
        await send(START)
        await send({"type": "http.response.body", "body": body})

    return app


def body_calls(fake, req):
    return [(c[2], c[3]) for c in fake.calls_for(req, "body")]


# ---------------------------------------------------------------- scope


def test_build_scope_decodes_and_copies_state():
    state = {"db": "pool"}
    p = parts(
        method=b"POST",
        path="/caf\u00e9/x y".encode() + b"\xff",
        raw_path=b"/caf%C3%A9/x%20y%FF",
        query_string=b"a=1&b=%20",
        root_path=b"/app",
        scheme=b"https",
        http_version=b"2",
        client=(b"::1", b"4000"),
        server=(b"h.example", b"8443"),
        has_body=b"1",
        headers=[(b"host", b"h.example"), (b"x-a", b"1"), (b"x-a", b"2")],
    )
    scope, has_body = asgi.build_scope(p, state)
    assert has_body is True
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "2"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "https"
    assert scope["path"] == "/caf\u00e9/x y\udcff"  # surrogateescape keeps the bad byte
    assert scope["path"].encode("utf-8", "surrogateescape").endswith(b"\xff")
    assert scope["raw_path"] == b"/caf%C3%A9/x%20y%FF"
    assert scope["query_string"] == b"a=1&b=%20"
    assert scope["root_path"] == "/app"
    assert scope["headers"] == [(b"host", b"h.example"), (b"x-a", b"1"), (b"x-a", b"2")]
    assert scope["client"] == ("::1", 4000)
    assert scope["server"] == ("h.example", 8443)
    assert set(scope["extensions"]) == {"http.response.pathsend", "http.response.early_hint", "http.response.trailers"}
    assert scope["state"] == state and scope["state"] is not state
    scope["state"]["x"] = 1
    assert state == {"db": "pool"}


def test_build_scope_unknown_client_and_no_body():
    scope, has_body = asgi.build_scope(parts(client=(b"", b""), server=(b"", b"")), {})
    assert scope["client"] is None and scope["server"] is None
    assert has_body is False


def test_build_scope_rejects_odd_header_parts():
    with pytest.raises(ValueError, match="malformed"):
        asgi.build_scope(parts() + (b"dangling",), {})


def test_scope_through_the_loop(asgi_native, serve):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)
        await respond()(scope, receive, send)

    serve(app)
    asgi_native.request(
        1, path=b"/a%2Fb", raw_path=b"/a%252Fb", query_string=b"q=1", client=(b"", b""), headers=[(b"accept", b"*/*")]
    )
    assert asgi_native.wait_finished(1) == asgi.OK
    scope = seen[0]
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/a%2Fb", b"/a%252Fb", b"q=1")
    assert scope["client"] is None
    assert scope["headers"] == [(b"accept", b"*/*")]
    assert scope["state"] == {}


# ---------------------------------------------------------------- a plain response


def test_hello(asgi_native, serve):
    serve(respond())
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert [c[0] for c in asgi_native.calls_for(1)] == ["start", "body", "finish"]
    assert asgi_native.calls_for(1, "start")[0][2:] == (200, [(b"content-type", b"text/plain")], False)
    assert body_calls(asgi_native, 1) == [(b"hello", False)]
    assert asgi_native.messages(level=3) == []


@pytest.mark.parametrize("body", [bytearray(b"abc"), memoryview(b"abc")])
def test_body_buffers_become_bytes(asgi_native, serve, body):
    serve(respond(body))
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert body_calls(asgi_native, 1) == [(b"abc", False)]  # the fake flags non-bytes


def test_header_lists_become_tuples(asgi_native, serve):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": [[b"x-a", bytearray(b"1")]]})
        await send({"type": "http.response.body"})

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert asgi_native.calls_for(1, "start")[0][2:4] == (404, [(b"x-a", b"1")])
    assert body_calls(asgi_native, 1) == [(b"", False)]


def test_returning_a_value_logs_a_warning(asgi_native, serve):
    async def app(scope, receive, send):
        await respond()(scope, receive, send)
        return 42

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert any("returned 42" in m for m in asgi_native.messages(level=2, handle=1))


# ---------------------------------------------------------------- receive


def test_no_body_needs_no_native_receive(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        got.append(await receive())
        # After the body, receive() waits for the response to complete.
        waiting = asyncio.ensure_future(receive())
        await asyncio.sleep(0.05)
        got.append(waiting.done())
        await respond()(scope, receive, send)
        got.append(await waiting)
        got.append(await receive())

    serve(app)
    asgi_native.request(1, has_body=b"0")
    assert asgi_native.wait_finished(1) == asgi.OK
    assert got == [
        {"type": "http.request", "body": b"", "more_body": False},
        False,
        {"type": "http.disconnect"},
        {"type": "http.disconnect"},
    ]
    assert asgi_native.calls_for(1, "receive") == []


def test_chunked_body_is_fetched_lazily(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        while True:
            msg = await receive()
            # One native receive per receive(): nothing read ahead.
            got.append((msg, len(asgi_native.calls_for(1, "receive"))))
            if not msg["more_body"]:
                break
        await respond()(scope, receive, send)

    serve(app)
    asgi_native.request(1, body=[b"ab", b"cd", b"ef"])
    assert asgi_native.wait_finished(1) == asgi.OK
    assert got == [
        ({"type": "http.request", "body": b"ab", "more_body": True}, 1),
        ({"type": "http.request", "body": b"cd", "more_body": True}, 2),
        ({"type": "http.request", "body": b"ef", "more_body": False}, 3),
    ]
    assert len(asgi_native.calls_for(1, "receive")) == 3


def test_disconnect_after_body_then_send_raises(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        got.append(await receive())
        got.append(await receive())  # waits for the client to leave
        try:
            await send(START)
        except ClientDisconnected as exc:
            got.append(exc)
            raise

    serve(app)
    asgi_native.request(1, body=[b"x"])
    asgi_native.wait(lambda: len(got) == 1)
    time.sleep(0.05)
    assert len(got) == 1  # still waiting
    asgi_native.push(asgi.EV_DISCONNECT, 1)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got[1] == {"type": "http.disconnect"}
    assert isinstance(got[2], OSError)
    assert asgi_native.calls_for(1, "start") == []
    assert asgi_native.messages(level=3) == []  # client gone is not an app error


def test_disconnect_resolves_pending_body_receive(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        got.append(await receive())
        got.append("cancelled?")  # reached only if the task was not cancelled

    serve(app)
    asgi_native.request(1, has_body=b"1")  # no chunks queued: the receive stays pending
    asgi_native.wait(lambda: asgi_native.calls_for(1, "receive"))
    asgi_native.push(asgi.EV_DISCONNECT, 1)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == [{"type": "http.disconnect"}, "cancelled?"]
    # A late body chunk for the dead request is ignored.
    asgi_native.answer_receive(1, b"late", False)
    asgi_native.request(2)
    assert asgi_native.wait_finished(2) == asgi.APP_ERROR


def test_receive_on_a_dead_request_is_disconnect(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        got.append(await receive())
        try:
            await send(START)
        except ClientDisconnected:
            got.append("send raised")
            raise

    asgi_native.dead.add(1)
    serve(app)
    asgi_native.request(1, has_body=b"1")
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == [{"type": "http.disconnect"}, "send raised"]


def test_receive_after_response_complete_is_disconnect(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        await respond()(scope, receive, send)
        got.append(await receive())

    serve(app)
    asgi_native.request(1, body=[b"unread"])
    assert asgi_native.wait_finished(1) == asgi.OK
    assert got == [{"type": "http.disconnect"}]
    assert asgi_native.calls_for(1, "receive") == []


def test_concurrent_receive_is_an_error(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        first = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        try:
            await receive()
        except RuntimeError as exc:
            got.append(str(exc))
        asgi_native.answer_receive(1, b"a", False)
        got.append(await first)
        await respond()(scope, receive, send)

    serve(app)
    asgi_native.request(1, has_body=b"1")
    assert asgi_native.wait_finished(1) == asgi.OK
    assert "another receive() is waiting" in got[0]
    assert got[1] == {"type": "http.request", "body": b"a", "more_body": False}


# ---------------------------------------------------------------- send order


def _expect_error(*messages):
    async def app(scope, receive, send):
        for m in messages:
            await send(m)

    return app


BODY = {"type": "http.response.body", "body": b"x"}


@pytest.mark.parametrize(
    "messages, error, code",
    [
        ([BODY], "Expected ASGI message 'http.response.start', but got 'http.response.body'.", 1),
        ([START, START], "Expected ASGI message 'http.response.body', but got 'http.response.start'.", 2),
        (
            [START, {"type": "http.response.trailers"}],
            "Expected ASGI message 'http.response.body', but got 'http.response.trailers'.",
            2,
        ),
        (
            [dict(START, trailers=True), BODY, BODY],
            "Expected ASGI message 'http.response.trailers', but got 'http.response.body'.",
            2,
        ),
        (
            [START, BODY, BODY],
            "Unexpected ASGI message 'http.response.body' sent, after response already completed.",
            0,
        ),
        (
            [START, {"type": "http.response.start", "status": 200}, BODY],
            "Expected ASGI message 'http.response.body', but got 'http.response.start'.",
            2,
        ),
        ([{"type": "http.response.start", "status": "200"}], "'status' must be an int, not str", 1),
        ([{"type": "http.response.start", "status": 103}], "must be 200-999", 1),
        (
            [{"type": "http.response.start", "status": 200, "headers": [("a", "b")]}],
            "header name must be bytes, not str",
            1,
        ),
        ([START, {"type": "http.response.body", "body": "text"}], "'body' must be bytes, not str", 2),
        (
            [START, {"type": "http.response.early_hint", "links": []}],
            "Expected ASGI message 'http.response.body', but got 'http.response.early_hint'.",
            2,
        ),
    ],
)
def test_send_order_errors(asgi_native, serve, messages, error, code):
    serve(_expect_error(*messages))
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == code
    errors = asgi_native.messages(level=3, handle=1)
    assert len(errors) == 1
    assert "ASGI app raised an exception" in errors[0] and error in errors[0]
    assert "Traceback (most recent call last)" in errors[0]


# ---------------------------------------------------------------- streaming


def test_streaming_body_waits_for_each_completion(asgi_native, serve):
    asgi_native.auto_complete = False
    done = []

    async def app(scope, receive, send):
        await send(START)
        for chunk in (b"a", b"b"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})  # nothing to send
        await send({"type": "http.response.body", "body": b"c"})
        done.append(True)

    serve(app)
    asgi_native.request(1)
    for i in range(3):
        asgi_native.wait(lambda i=i: len(body_calls(asgi_native, 1)) == i + 1)
        time.sleep(0.05)
        # Backpressure: the next body waits for this one's completion.
        assert body_calls(asgi_native, 1) == [(b"a", True), (b"b", True), (b"c", False)][: i + 1]
        assert 1 not in asgi_native.finished
        asgi_native.complete(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert done == [True]


def test_copied_bodies_need_no_completion(asgi_native, serve):
    # The C side copies small bodies and says so: send() is over at once,
    # and the response is complete without any completion event; the final
    # body ends the request on the Go side, so no asgi_finish follows (the
    # fake flags one as a call on a finished request).
    asgi_native.auto_complete = False
    asgi_native.outbox = True
    done = []

    async def app(scope, receive, send):
        await send(START)
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        done.append(await receive())

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert body_calls(asgi_native, 1) == [(b"a", True), (b"b", False)]
    assert done == [{"type": "http.disconnect"}]  # the response is over
    assert asgi_native.messages(level=3) == []


def test_copied_body_then_disconnect_raises(asgi_native, serve):
    # A write Go could not make is reported as a disconnect when no send
    # awaits it: the next send raises, and the request ends as client-gone.
    asgi_native.auto_complete = False
    asgi_native.outbox = True
    got = []

    async def app(scope, receive, send):
        await send(START)
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        while True:
            await asyncio.sleep(0.01)
            try:
                await send({"type": "http.response.body", "body": b"b", "more_body": True})
            except OSError as exc:
                got.append(type(exc))
                raise

    serve(app)
    asgi_native.request(1)
    asgi_native.wait(lambda: body_calls(asgi_native, 1))
    asgi_native.push(asgi.EV_DISCONNECT, 1)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got in ([], [ClientDisconnected])  # cancelled while asleep, or raised by send
    assert asgi_native.messages(level=3) == []


def test_failed_completion_raises_client_disconnected(asgi_native, serve):
    asgi_native.auto_complete = False
    got = []

    async def app(scope, receive, send):
        await send(START)
        try:
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
        except OSError as exc:
            got.append(type(exc))
            got.append(await receive())
            raise

    serve(app)
    asgi_native.request(1)
    asgi_native.wait(lambda: body_calls(asgi_native, 1))
    asgi_native.complete(1, ok=False)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == [ClientDisconnected, {"type": "http.disconnect"}]
    assert asgi_native.messages(level=3) == []


def test_pathsend(asgi_native, serve, tmp_path):
    path = str(tmp_path / "f.txt")

    async def app(scope, receive, send):
        assert "http.response.pathsend" in scope["extensions"]
        await send(START)
        await send({"type": "http.response.pathsend", "path": path})

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert [c[0] for c in asgi_native.calls_for(1)] == ["start", "pathsend", "finish"]
    assert asgi_native.calls_for(1, "pathsend")[0][2] == path


def test_pathsend_needs_an_absolute_path(asgi_native, serve):
    serve(_expect_error(START, {"type": "http.response.pathsend", "path": "rel/f.txt"}))
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR_AFTER_START
    assert "must be absolute" in asgi_native.messages(level=3, handle=1)[0]


def test_early_hints_before_start(asgi_native, serve):
    async def app(scope, receive, send):
        await send({"type": "http.response.early_hint", "links": [b"</s.css>; rel=preload"]})
        await respond()(scope, receive, send)

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert [c[0] for c in asgi_native.calls_for(1)] == ["early_hint", "start", "body", "finish"]
    assert asgi_native.calls_for(1, "early_hint")[0][2] == [(b"link", b"</s.css>; rel=preload")]


def test_trailers(asgi_native, serve):
    async def app(scope, receive, send):
        await send(dict(START, trailers=True))
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum2", b"2")]})

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert [c[0] for c in asgi_native.calls_for(1)] == ["start", "body", "trailers", "trailers", "finish"]
    assert asgi_native.calls_for(1, "start")[0][4] is True
    assert [c[2:] for c in asgi_native.calls_for(1, "trailers")] == [
        ([(b"x-sum", b"1")], True),
        ([(b"x-sum2", b"2")], False),
    ]


def test_missing_trailers_leave_the_response_incomplete(asgi_native, serve):
    serve(_expect_error(dict(START, trailers=True), BODY))
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR_AFTER_START
    assert "returned without completing response" in asgi_native.messages(level=3, handle=1)[0]


# ---------------------------------------------------------------- endings


def test_exception_before_start(asgi_native, serve):
    async def app(scope, receive, send):
        raise ValueError("boom")

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR
    (msg,) = asgi_native.messages(level=3, handle=1)
    assert msg.startswith("ASGI app raised an exception:\nTraceback")
    assert "ValueError: boom" in msg


def test_exception_after_start(asgi_native, serve):
    async def app(scope, receive, send):
        await send(START)
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        raise KeyError("late")

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR_AFTER_START
    (msg,) = asgi_native.messages(level=3, handle=1)
    assert "ASGI app raised an exception after the response started" in msg and "KeyError: 'late'" in msg


def test_exception_after_complete_keeps_the_response(asgi_native, serve):
    async def app(scope, receive, send):
        await respond()(scope, receive, send)
        raise SystemExit(3)  # must not stop the loop either

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert "after the response completed" in asgi_native.messages(level=3, handle=1)[0]
    asgi_native.request(2)  # the loop still serves
    assert asgi_native.wait_finished(2) == asgi.OK


def test_no_response(asgi_native, serve):
    async def app(scope, receive, send):
        pass

    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR
    assert asgi_native.messages(level=3, handle=1) == ["ASGI callable returned without starting response"]


def test_incomplete_response(asgi_native, serve):
    serve(_expect_error(START, {"type": "http.response.body", "body": b"a", "more_body": True}))
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR_AFTER_START
    assert asgi_native.messages(level=3, handle=1) == ["ASGI callable returned without completing response"]


def test_disconnect_cancels_a_sleeping_app(asgi_native, serve):
    state = {"started": threading.Event()}

    async def app(scope, receive, send):
        state["started"].set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    serve(app)
    asgi_native.request(1)
    assert state["started"].wait(5)
    asgi_native.push(asgi.EV_DISCONNECT, 1)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert state.get("cancelled") is True
    assert asgi_native.messages(level=3) == []


def test_disconnect_before_the_task_ran(asgi_native, serve):
    ran = []

    async def app(scope, receive, send):
        ran.append(1)

    serve(app)
    # Both in one drain: the task is cancelled before its first step.
    with asgi_native.cond:
        asgi_native.queue += [(asgi.EV_REQUEST, 1, parts()), (asgi.EV_DISCONNECT, 1)]
    asgi_native.push(asgi.EV_SENT, 99, True)  # a stale event, ignored; wakes the loop
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert ran == []


def test_body_stays_referenced_until_its_completion_after_cancel(asgi_native, serve):
    asgi_native.auto_complete = False
    cancelled = threading.Event()

    async def app(scope, receive, send):
        await send(START)
        try:
            await send({"type": "http.response.body", "body": os.urandom(100_000), "more_body": True})
        except asyncio.CancelledError:
            cancelled.set()
            raise

    serve(app)
    asgi_native.request(1)
    asgi_native.wait(lambda: body_calls(asgi_native, 1))
    asgi_native.push(asgi.EV_DISCONNECT, 1)
    assert cancelled.wait(5)
    time.sleep(0.05)
    # The task is over, but Go may still be reading the body: no finish yet.
    assert 1 not in asgi_native.finished
    asgi_native.complete(1, ok=False)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    # The fake saw Python still holding the bytes when the completion came.
    assert asgi_native.released_early == []
    assert asgi_native.drains > 0


def test_a_cancelled_send_still_blocks_the_next_one(asgi_native, serve):
    asgi_native.auto_complete = False
    got = []

    async def app(scope, receive, send):
        await send(START)
        try:
            await asyncio.wait_for(send({"type": "http.response.body", "body": b"a", "more_body": True}), 0.01)
        except asyncio.TimeoutError:
            got.append("timeout")
        await send({"type": "http.response.body", "body": b"b"})

    serve(app)
    asgi_native.request(1)
    asgi_native.wait(lambda: got)
    time.sleep(0.05)
    assert body_calls(asgi_native, 1) == [(b"a", True)]
    asgi_native.complete(1)
    asgi_native.wait(lambda: len(body_calls(asgi_native, 1)) == 2)
    asgi_native.complete(1)
    assert asgi_native.wait_finished(1) == asgi.OK


def test_send_after_disconnect_raises(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        got.append(await receive())
        got.append(await receive())
        for m in (START, BODY):
            try:
                await send(m)
            except ClientDisconnected as exc:
                got.append(isinstance(exc, OSError))

    serve(app)
    asgi_native.request(1)
    asgi_native.wait(lambda: got)
    asgi_native.push(asgi.EV_DISCONNECT, 1)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got[1:] == [{"type": "http.disconnect"}, True, True]


def test_requests_run_concurrently(asgi_native, serve):
    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await asyncio.Event().wait()  # never set: only the disconnect ends it
        await respond(scope["path"].encode())(scope, receive, send)

    serve(app)
    asgi_native.request(1, path=b"/slow")
    asgi_native.request(2, path=b"/fast")
    assert asgi_native.wait_finished(2) == asgi.OK
    assert 1 not in asgi_native.finished
    asgi_native.push(asgi.EV_DISCONNECT, 1)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert body_calls(asgi_native, 2) == [(b"/fast", False)]


# ---------------------------------------------------------------- app styles


class ASGI2App:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await respond(b"v2 " + self.scope["method"].encode())(self.scope, receive, send)


def asgi2_function(scope):
    async def instance(receive, send):
        await respond(b"v2 function")(scope, receive, send)

    return instance


@pytest.mark.parametrize("app, body", [(ASGI2App, b"v2 GET"), (asgi2_function, b"v2 function")])
def test_asgi2_double_callables(asgi_native, serve, app, body):
    serve(app)
    asgi_native.request(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert body_calls(asgi_native, 1) == [(body, False)]


def test_as_asgi3_detection():
    async def coro(scope, receive, send):
        pass

    class Instance:
        async def __call__(self, scope, receive, send):
            pass

    def sync_wrapper(scope, receive, send):  # returns an awaitable: ASGI 3
        return coro(scope, receive, send)

    inst = Instance()
    assert asgi.as_asgi3(coro) is coro
    assert asgi.as_asgi3(inst) is inst
    assert asgi.as_asgi3(sync_wrapper) is sync_wrapper
    for legacy in (ASGI2App, asgi2_function, lambda *args: None):
        wrapped = asgi.as_asgi3(legacy)
        assert wrapped is not legacy and wrapped.__wrapped_asgi2__ is legacy


def test_event_that_cannot_be_handled_ends_its_request(asgi_native, serve):
    # A malformed event (here a body chunk missing its fields) must not leave
    # the request waiting forever: its task is ended as an app error.
    async def app(scope, receive, send):
        await receive()
        await respond()(scope, receive, send)

    serve(app)
    asgi_native.request(1, has_body=b"1")  # no chunks queued: receive() stays pending
    asgi_native.wait(lambda: 1 in asgi_native.receiving)
    asgi_native.push(asgi.EV_BODY, 1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR
    assert any("handling ASGI event 1 failed" in m for m in asgi_native.messages(3))
