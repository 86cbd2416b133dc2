"""WebSocket connections (ASGI WebSocket spec 2.4) through asgi.run_loop,
against the fake native module."""

import asyncio
import os
import threading
import time

import pytest
from asgi_fake import WS_WINDOW, parts

from caddysnake import ClientDisconnected, asgi

ACCEPT = {"type": "websocket.accept"}
CONNECT = {"type": "websocket.connect"}


def names(fake, req):
    return [c[0] for c in fake.calls_for(req)]


def sends(fake, req):
    return [(c[2], c[3]) for c in fake.calls_for(req, "ws_send")]


def disconnect(code, reason=""):
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


def only_errors(fake, req):
    return fake.messages(level=3, handle=req)


# ---------------------------------------------------------------- scope


def test_build_websocket_scope():
    state = {"db": "pool"}
    p = parts(
        path="/caf\u00e9".encode(),
        raw_path=b"/caf%C3%A9",
        query_string=b"a=1",
        root_path=b"/app",
        scheme=b"wss",
        http_version=b"1.1",
        client=(b"::1", b"4000"),
        server=(b"h.example", b"443"),
        headers=[
            (b"host", b"h.example"),
            (b"sec-websocket-protocol", b"chat, superchat ,"),
            (b"Sec-WebSocket-Protocol", b"v2.json"),
        ],
    )
    scope = asgi.build_websocket_scope(p, state)
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "wss"
    assert (scope["path"], scope["raw_path"]) == ("/caf\u00e9", b"/caf%C3%A9")
    assert (scope["query_string"], scope["root_path"]) == (b"a=1", "/app")
    assert scope["client"] == ("::1", 4000) and scope["server"] == ("h.example", 443)
    assert scope["headers"][0] == (b"host", b"h.example") and len(scope["headers"]) == 3
    # All the headers, split on commas, stripped, empty entries dropped.
    assert scope["subprotocols"] == ["chat", "superchat", "v2.json"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope
    assert scope["state"] == state and scope["state"] is not state


def test_build_websocket_scope_rejects_odd_header_parts():
    with pytest.raises(ValueError, match="malformed"):
        asgi.build_websocket_scope(parts() + (b"dangling",), {})


@pytest.mark.parametrize("scheme", [b"ws", b"wss"])
def test_scope_through_the_loop(asgi_native, serve, scheme):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)

    serve(app)
    asgi_native.websocket(1, scheme=scheme, path=b"/chat", query_string=b"room=1")
    assert asgi_native.wait_finished(1) == asgi.OK
    scope = seen[0]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == scheme.decode()
    assert (scope["path"], scope["query_string"]) == ("/chat", b"room=1")
    assert scope["subprotocols"] == []
    assert scope["state"] == {}


# ---------------------------------------------------------------- handshake


def test_connect_comes_first_without_native_calls(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        got.append(await receive())
        got.append(list(names(asgi_native, 1)))
        await send(ACCEPT)

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert got == [CONNECT, []]
    assert names(asgi_native, 1) == ["ws_accept", "finish"]


def test_connect_comes_first_even_after_a_disconnect(asgi_native, serve):
    got = []
    go = threading.Event()

    async def app(scope, receive, send):
        while not go.is_set():
            await asyncio.sleep(0.005)
        got.append(await receive())
        got.append(await receive())

    serve(app)
    with asgi_native.cond:  # queued together, taken by one drain
        asgi_native.queue += [(asgi.EV_WS_CONNECT, 1, parts(scheme=b"ws")), (asgi.EV_WS_CLOSE, 1, 1006, b"")]
    asgi_native.push(asgi.EV_SENT, 99, True)  # a stale event, ignored; wakes the loop
    asgi_native.drained()
    go.set()
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == [CONNECT, disconnect(1006)]


def test_accept_with_subprotocol_and_headers(asgi_native, serve):
    async def app(scope, receive, send):
        await send(
            {"type": "websocket.accept", "subprotocol": "superchat", "headers": [[b"set-cookie", bytearray(b"a=1")]]}
        )

    serve(app)
    asgi_native.websocket(1, subprotocols="chat, superchat")
    assert asgi_native.wait_finished(1) == asgi.OK
    (call,) = asgi_native.calls_for(1, "ws_accept")
    assert call[2:] == ("superchat", [(b"set-cookie", b"a=1")])


def test_accept_without_subprotocol_passes_empty_string(asgi_native, serve):
    async def app(scope, receive, send):
        await send({"type": "websocket.accept", "subprotocol": None})

    serve(app)
    asgi_native.websocket(1, subprotocols="chat")
    assert asgi_native.wait_finished(1) == asgi.OK
    assert asgi_native.calls_for(1, "ws_accept")[0][2:] == ("", [])


def test_unoffered_subprotocol_is_left_to_the_server(asgi_native, serve):
    # Go refuses the handshake (wsconform.go): the server, not a ValueError a
    # framework could turn into a 403, answers the client.
    async def app(scope, receive, send):
        await send({"type": "websocket.accept", "subprotocol": "other"})

    serve(app)
    asgi_native.websocket(1, subprotocols="chat")
    asgi_native.wait_finished(1)
    assert asgi_native.calls_for(1, "ws_accept")[0][2] == "other"


@pytest.mark.parametrize(
    "message, error",
    [
        ({"type": "websocket.accept", "subprotocol": b"chat"}, "must be a str or None, not bytes"),
        (
            {"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"chat")]},
            "must not include sec-websocket-protocol",
        ),
    ],
)
def test_bad_accept_is_an_error_before_accept(asgi_native, serve, message, error):
    async def app(scope, receive, send):
        await send(message)

    serve(app)
    asgi_native.websocket(1, subprotocols="chat")
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR
    (msg,) = only_errors(asgi_native, 1)
    assert error in msg
    assert asgi_native.calls_for(1, "ws_accept") == []


def test_receive_before_accept_waits_for_the_handshake(asgi_native, serve):
    got = []
    accept = threading.Event()

    async def app(scope, receive, send):
        got.append(await receive())
        pending = asyncio.ensure_future(receive())
        while not accept.is_set():
            await asyncio.sleep(0.005)
        got.append(pending.done())
        await send(ACCEPT)
        got.append(await pending)

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: len(got) == 1)
    time.sleep(0.05)
    accept.set()
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    asgi_native.ws_message(1, "hi")
    assert asgi_native.wait_finished(1) == asgi.OK
    assert got == [CONNECT, False, {"type": "websocket.receive", "text": "hi"}]


def test_failed_handshake_raises_client_disconnected(asgi_native, serve):
    asgi_native.auto_complete = False
    got = []

    async def app(scope, receive, send):
        await receive()
        try:
            await send(ACCEPT)
        except ClientDisconnected as exc:
            got.append(isinstance(exc, OSError))
            got.append(await receive())
            raise

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    asgi_native.complete(1, ok=False)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == [True, disconnect(1006)]
    assert only_errors(asgi_native, 1) == []


# ---------------------------------------------------------------- messages


def echo(count):
    async def app(scope, receive, send):
        assert await receive() == CONNECT
        await send(ACCEPT)
        for _ in range(count):
            msg = await receive()
            await send({"type": "websocket.send", **{k: v for k, v in msg.items() if k != "type"}})

    return app


def test_echo_text_and_bytes(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        for _ in range(3):
            msg = await receive()
            got.append(msg)
            if "text" in msg:
                await send({"type": "websocket.send", "text": msg["text"]})
            else:
                await send({"type": "websocket.send", "bytes": msg["bytes"]})

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    asgi_native.ws_message(1, "caf\u00e9 \u2603")
    asgi_native.ws_message(1, b"\x00\xff")
    asgi_native.ws_message(1, b"")  # an empty binary message is still a message
    assert asgi_native.wait_finished(1) == asgi.OK
    # Exactly one of text and bytes in each message.
    assert got == [
        {"type": "websocket.receive", "text": "caf\u00e9 \u2603"},
        {"type": "websocket.receive", "bytes": b"\x00\xff"},
        {"type": "websocket.receive", "bytes": b""},
    ]
    assert sends(asgi_native, 1) == [("caf\u00e9 \u2603".encode(), True), (b"\x00\xff", False), (b"", False)]


@pytest.mark.parametrize("data", [bytearray(b"ab"), memoryview(b"ab")])
def test_send_buffers_become_bytes(asgi_native, serve, data):
    async def app(scope, receive, send):
        await send(ACCEPT)
        await send({"type": "websocket.send", "bytes": data})

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert sends(asgi_native, 1) == [(b"ab", False)]  # the fake flags non-bytes


def test_one_credit_per_delivered_message(asgi_native, serve):
    seen = []
    go = threading.Event()

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        while not go.is_set():
            await asyncio.sleep(0.005)
        for _ in range(WS_WINDOW + 2):
            msg = await receive()
            # The credit for a message is granted as it is handed out.
            seen.append((msg["text"], len(asgi_native.calls_for(1, "ws_receive"))))

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    for i in range(WS_WINDOW):  # Go's whole window, read ahead
        asgi_native.ws_message(1, str(i))
    asgi_native.drained()
    time.sleep(0.05)
    assert asgi_native.calls_for(1, "ws_receive") == []  # buffered is not delivered
    go.set()
    asgi_native.wait(lambda: len(seen) == WS_WINDOW)
    # The window is open again: Go may send two more.
    asgi_native.ws_message(1, "16")
    asgi_native.ws_message(1, "17")
    assert asgi_native.wait_finished(1) == asgi.OK
    assert seen == [(str(i), i + 1) for i in range(WS_WINDOW + 2)]
    assert asgi_native.credits[1] == WS_WINDOW


# ---------------------------------------------------------------- send order


def _sends(*messages):
    async def app(scope, receive, send):
        for m in messages:
            await send(m)

    return app


TEXT = {"type": "websocket.send", "text": "x"}


@pytest.mark.parametrize(
    "messages, error, code",
    [
        (
            [TEXT],
            "Expected ASGI message 'websocket.accept', 'websocket.close' or "
            "'websocket.http.response.start', but got 'websocket.send'.",
            1,
        ),
        (
            [ACCEPT, ACCEPT],
            "Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.accept'.",
            2,
        ),
        (
            [ACCEPT, {"type": "websocket.http.response.start", "status": 403}],
            "Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.http.response.start'.",
            2,
        ),
        (
            [ACCEPT, {"type": "websocket.send", "text": "a", "bytes": b"a"}],
            "exactly one of 'bytes' and 'text', got both",
            2,
        ),
        ([ACCEPT, {"type": "websocket.send"}], "exactly one of 'bytes' and 'text', got neither", 2),
        ([ACCEPT, {"type": "websocket.send", "text": b"a"}], "'text' must be a str, not bytes", 2),
        ([ACCEPT, {"type": "websocket.send", "bytes": "a"}], "'bytes' must be bytes, not str", 2),
        ([ACCEPT, {"type": "websocket.close", "code": "1000"}], "'code' must be an int, not str", 2),
        (
            [{"type": "websocket.http.response.start", "status": 403}, ACCEPT],
            "Expected ASGI message 'websocket.http.response.body', but got 'websocket.accept'.",
            2,
        ),
        (
            [{"type": "websocket.http.response.body", "body": b"x"}],
            "Expected ASGI message 'websocket.accept', 'websocket.close' or "
            "'websocket.http.response.start', but got 'websocket.http.response.body'.",
            1,
        ),
        ([{"type": "websocket.http.response.start", "status": "403"}], "'status' must be an int, not str", 1),
    ],
)
def test_send_order_errors(asgi_native, serve, messages, error, code):
    serve(_sends(*messages))
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == code
    (msg,) = only_errors(asgi_native, 1)
    assert "ASGI websocket app raised an exception" in msg and error in msg
    assert "Traceback (most recent call last)" in msg


def test_concurrent_receive_is_an_error(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        first = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        try:
            await receive()
        except RuntimeError as exc:
            got.append(str(exc))
        got.append(await first)

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: got)
    asgi_native.ws_message(1, b"m")
    assert asgi_native.wait_finished(1) == asgi.OK
    assert "another receive() is waiting" in got[0]
    assert got[1] == {"type": "websocket.receive", "bytes": b"m"}


# ---------------------------------------------------------------- closing


def test_close_before_accept_rejects(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.close"})
        got.append(await receive())
        try:
            await send(TEXT)
        except ClientDisconnected:
            got.append("send raised")

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    # Go answers ws_close before accept with 403.
    assert names(asgi_native, 1) == ["ws_close", "finish"]
    assert asgi_native.calls_for(1, "ws_close")[0][2:] == (1000, "")
    # No close frame was exchanged: 1006.
    assert got == [disconnect(1006), "send raised"]


def test_app_close_with_code_and_reason(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        await send({"type": "websocket.send", "text": "bye"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})
        got.append(await receive())
        got.append(await receive())
        for m in (TEXT, {"type": "websocket.close"}):
            try:
                await send(m)
            except ClientDisconnected as exc:
                got.append(type(exc))
        try:
            await send(ACCEPT)
        except RuntimeError as exc:
            got.append(str(exc))

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert names(asgi_native, 1) == ["ws_accept", "ws_send", "ws_close", "finish"]
    assert asgi_native.calls_for(1, "ws_close")[0][2:] == (4001, "done")
    assert got == [
        disconnect(4001, "done"),
        disconnect(4001, "done"),
        ClientDisconnected,
        ClientDisconnected,
        "Unexpected ASGI message 'websocket.accept' sent, after 'websocket.close'.",
    ]
    assert only_errors(asgi_native, 1) == []


def test_app_close_wakes_a_receive_in_another_task(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        reader = asyncio.ensure_future(receive())
        await asyncio.sleep(0.01)
        await send({"type": "websocket.close", "code": 1001})
        got.append(await reader)

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert got == [disconnect(1001)]


def test_client_disconnect_is_reported_and_repeated(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        for _ in range(3):
            got.append(await receive())

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    with asgi_native.cond:  # both in one drain: the message still comes first
        asgi_native.credits[1] -= 1
        asgi_native.queue.append((asgi.EV_WS_MESSAGE, 1, b"last", True))
    asgi_native.ws_disconnect(1, 1001, "going away \u2603".encode())
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == [
        {"type": "websocket.receive", "text": "last"},
        disconnect(1001, "going away \u2603"),
        disconnect(1001, "going away \u2603"),
    ]
    assert only_errors(asgi_native, 1) == []


def test_send_after_client_disconnect_raises(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        got.append(await receive())
        for m in (TEXT, {"type": "websocket.close"}):
            try:
                await send(m)
            except ClientDisconnected as exc:
                got.append(isinstance(exc, OSError))
        await send(TEXT)  # raised through the app: still just client-gone

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    asgi_native.ws_disconnect(1, 1005)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == [disconnect(1005), True, True]
    assert names(asgi_native, 1) == ["ws_accept", "finish"]
    assert only_errors(asgi_native, 1) == []


def test_failed_send_completion_raises(asgi_native, serve):
    asgi_native.auto_complete = False
    got = []

    async def app(scope, receive, send):
        await send(ACCEPT)
        try:
            await send({"type": "websocket.send", "bytes": b"a"})
        except ClientDisconnected:
            got.append("raised")
            got.append(await receive())
            got.append(await receive())

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    asgi_native.complete(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_send"))
    asgi_native.complete(1, ok=False)
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == ["raised", CONNECT, disconnect(1006)]


def test_sends_wait_for_their_completion(asgi_native, serve):
    asgi_native.auto_complete = False
    done = []

    async def app(scope, receive, send):
        await send(ACCEPT)
        await send({"type": "websocket.send", "text": "a"})
        await send({"type": "websocket.send", "text": "b"})
        done.append(True)

    serve(app)
    asgi_native.websocket(1)
    for i, name in enumerate(["ws_accept", "ws_send", "ws_send"]):
        asgi_native.wait(lambda i=i: len(asgi_native.calls_for(1)) == i + 1)
        time.sleep(0.03)
        # Backpressure: nothing more until this one's completion.
        assert names(asgi_native, 1)[-1] == name and len(asgi_native.calls_for(1)) == i + 1
        asgi_native.complete(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert done == [True]


def test_send_data_stays_referenced_until_its_completion_after_cancel(asgi_native, serve):
    asgi_native.auto_complete = False
    got = []

    async def app(scope, receive, send):
        await send(ACCEPT)
        try:
            await asyncio.wait_for(send({"type": "websocket.send", "bytes": os.urandom(100_000)}), 0.01)
        except asyncio.TimeoutError:
            got.append("cancelled")

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    asgi_native.complete(1)
    asgi_native.wait(lambda: got)
    time.sleep(0.05)
    # The app returned, but Go may still be reading the bytes: no finish yet.
    assert 1 not in asgi_native.finished
    asgi_native.complete(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert len(sends(asgi_native, 1)[0][0]) == 100_000
    # The fake saw Python still holding the bytes when the completion came
    # (checked again at teardown).
    assert asgi_native.released_early == []


# ---------------------------------------------------------------- denial response


def test_denial_response(asgi_native, serve):
    got = []

    async def app(scope, receive, send):
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        await send(
            {"type": "websocket.http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        got.append(await receive())
        try:
            await send(TEXT)
        except RuntimeError as exc:
            got.append(str(exc))

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert names(asgi_native, 1) == ["start", "body", "body", "finish"]
    assert asgi_native.calls_for(1, "start")[0][2:] == (401, [(b"content-type", b"text/plain")], False)
    assert [c[2:] for c in asgi_native.calls_for(1, "body")] == [(b"no ", True), (b"entry", False)]
    assert got == [disconnect(1006), "Unexpected ASGI message 'websocket.send' sent, after response already completed."]
    assert only_errors(asgi_native, 1) == []


def test_incomplete_denial_response(asgi_native, serve):
    serve(
        _sends(
            {"type": "websocket.http.response.start", "status": 403},
            {"type": "websocket.http.response.body", "body": b"a", "more_body": True},
        )
    )
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR_AFTER_START
    assert only_errors(asgi_native, 1) == ["ASGI callable returned without completing the denial response"]


# ---------------------------------------------------------------- endings


def test_exception_before_accept(asgi_native, serve):
    async def app(scope, receive, send):
        await receive()
        raise ValueError("boom")

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR
    (msg,) = only_errors(asgi_native, 1)
    assert msg.startswith("ASGI websocket app raised an exception:\nTraceback")
    assert "ValueError: boom" in msg


def test_exception_after_accept(asgi_native, serve):
    async def app(scope, receive, send):
        await send(ACCEPT)
        await send(TEXT)
        raise KeyError("late")

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.APP_ERROR_AFTER_START
    (msg,) = only_errors(asgi_native, 1)
    assert "ASGI websocket app raised an exception after accepting" in msg and "KeyError: 'late'" in msg
    assert "Traceback (most recent call last)" in msg


def test_exception_after_close_keeps_the_clean_close(asgi_native, serve):
    async def app(scope, receive, send):
        await send(ACCEPT)
        await send({"type": "websocket.close"})
        raise SystemExit(3)  # must not stop the loop either

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert "after closing" in only_errors(asgi_native, 1)[0]
    asgi_native.websocket(2)  # the loop still serves
    assert asgi_native.wait_finished(2) == asgi.OK


def test_return_without_accepting_is_finish_0(asgi_native, serve):
    async def app(scope, receive, send):
        await receive()

    serve(app)
    asgi_native.websocket(1)
    # Go answers 403 itself.
    assert asgi_native.wait_finished(1) == asgi.OK
    assert names(asgi_native, 1) == ["finish"]
    assert asgi_native.messages(level=3) == []


def test_return_after_accepting_is_finish_0(asgi_native, serve):
    serve(echo(1))
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    asgi_native.ws_message(1, "x")
    # Go closes with 1000 itself.
    assert asgi_native.wait_finished(1) == asgi.OK
    assert names(asgi_native, 1) == ["ws_accept", "ws_receive", "ws_send", "finish"]


def test_returning_a_value_logs_a_warning(asgi_native, serve):
    async def app(scope, receive, send):
        await send(ACCEPT)
        return "oops"

    serve(app)
    asgi_native.websocket(1)
    assert asgi_native.wait_finished(1) == asgi.OK
    assert any("returned 'oops'" in m for m in asgi_native.messages(level=2, handle=1))


def test_disconnect_does_not_cancel_a_sending_app(asgi_native, serve):
    got = []
    disconnected = threading.Event()

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        await send(TEXT)
        while not disconnected.is_set():  # a push-only app: never receives
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # a cancel would land here
        got.append("still running")
        try:
            await send(TEXT)
        except ClientDisconnected:
            got.append("send raised")

    serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_send"))
    asgi_native.ws_disconnect(1, 1001)
    asgi_native.drained()
    disconnected.set()
    assert asgi_native.wait_finished(1) == asgi.CLIENT_GONE
    assert got == ["still running", "send raised"]
    assert len(sends(asgi_native, 1)) == 1


def test_websocket_and_http_share_the_loop(asgi_native, serve):
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await send(ACCEPT)
            msg = await receive()
            await send({"type": "websocket.send", "text": msg["text"].upper()})
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    serve(app)
    asgi_native.websocket(1)
    asgi_native.request(2)
    assert asgi_native.wait_finished(2) == asgi.OK
    assert 1 not in asgi_native.finished
    asgi_native.ws_message(1, "hi")
    assert asgi_native.wait_finished(1) == asgi.OK
    assert sends(asgi_native, 1) == [(b"HI", True)]


def test_shutdown_ends_an_open_websocket(asgi_native, serve):
    seen = []

    async def app(scope, receive, send):
        await receive()
        await send(ACCEPT)
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                seen.append(msg)
                return

    r = serve(app)
    asgi_native.websocket(1)
    asgi_native.wait(lambda: asgi_native.calls_for(1, "ws_accept"))
    # The drain tells the app at once (1001, going away), with no deadline needed.
    assert r.stop(drain=True) == (True, "")
    assert seen == [{"type": "websocket.disconnect", "code": 1001, "reason": "server shutting down"}]
    assert asgi_native.finished[1] == asgi.CLIENT_GONE
    assert asgi_native.messages(level=3) == []


def test_websocket_after_shutdown_began_is_refused(asgi_native, serve):
    cancelled = threading.Event()
    release = threading.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()  # shutdown has begun
                while not release.is_set():
                    await asyncio.sleep(0.005)
        await send(ACCEPT)

    r = serve(app)
    asgi_native.websocket(1, path=b"/slow")
    asgi_native.drained()
    asgi_native.push(asgi.EV_SHUTDOWN, 0)
    asgi_native.push(asgi.EV_ABANDON, 0)
    assert cancelled.wait(5)
    asgi_native.websocket(2)
    assert asgi_native.wait_finished(2) == asgi.STOPPED
    assert names(asgi_native, 2) == ["finish"]
    release.set()
    r.join()
    assert asgi_native.finished[1] == asgi.STOPPED
