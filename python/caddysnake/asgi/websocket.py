"""One WebSocket connection (ASGI WebSocket spec 2.4, with the
websocket.http.response extension): the app's receive() and send().
"""

import collections

from .. import bridge
from ..bridge import LOG_ERROR, ClientDisconnected
from ..codes import APP_ERROR, APP_ERROR_AFTER_START, OK
from .exchange import Exchange, byte_pairs, to_bytes

# Close code for a connection that ended without a close frame (RFC 6455
# 7.4.1): what receive() reports when there is no better code.
WS_ABNORMAL_CLOSURE = 1006
WS_GOING_AWAY = 1001

_WS_BEFORE_ACCEPT = ("websocket.accept", "websocket.close", "websocket.http.response.start")


def _ws_expected(expected, kind):
    names = [f"'{e}'" for e in expected]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return RuntimeError(f"Expected ASGI message {listed}, but got '{kind}'.")


class WebSocket(Exchange):
    """One WebSocket connection: the app's task, its receive() and send().

    Go reads client messages ahead into the app's event queue, but only as
    many as Python granted credits for: each websocket.receive handed to the
    app grants one more (ws_receive), so at most Go's window is ever queued.
    """

    _KIND = "websocket"
    _APP = "websocket app"

    __slots__ = (
        # receive
        "connect_sent",
        "inbox",
        "peer_close",
        # send
        "accepted",
        "denial_started",
        "close_sent",
        "close_code",
        "close_reason",
    )

    def __init__(self, server, handle, scope):
        Exchange.__init__(self, server, handle, scope)
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
    # _client_left is Exchange's.

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
            bridge.log(self.handle, LOG_ERROR, "ASGI callable returned without completing the denial response")
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
            bridge.native.ws_receive(self.handle)
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
                raise TypeError(
                    f"websocket.accept 'subprotocol' must be a str or None, not {type(subprotocol).__name__}"
                )
            # One the client did not offer: the server refuses the handshake
            # (wsconform.go), and this send fails as for a client gone.
        headers = byte_pairs(message.get("headers", ()), "websocket.accept")
        if any(name.lower() == b"sec-websocket-protocol" for name, _ in headers):
            # WebSocket spec, "Accept": the subprotocol key sets that header.
            raise ValueError(
                "websocket.accept 'headers' must not include sec-websocket-protocol; use the 'subprotocol' key instead"
            )
        await self._ready()
        self._call(bridge.native.ws_accept, subprotocol or "", headers)
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
            payload, is_text = to_bytes(data, "websocket.send 'bytes'"), False
        await self._ready()
        self._call(bridge.native.ws_send, payload, is_text)
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
        self._call(bridge.native.ws_close, code, reason)
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
        headers = byte_pairs(message.get("headers", ()), "websocket.http.response.start")
        self._call(bridge.native.asgi_start, status, headers, False)
        self.denial_started = True

    async def _send_denial_body(self, message):
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = to_bytes(body, "websocket.http.response.body 'body'")
        more = bool(message.get("more_body", False))
        if more and not body:
            return
        await self._ready()
        if not more:
            self.ended = True
        self._call(bridge.native.asgi_body, body, more)
        self.sending = body
        if not more:
            self._wake()
        await self._completion()
