"""The numbers the package shares with the C bridge and Go.

internal/engine/codes.h defines them (CS_ + these names); `_caddysnake`
exports the same values. They are literals here so that the package imports
without `_caddysnake` (its own tests); internal/engine/codes_test.go fails if
this file and codes.h disagree.
"""

# ASGI inbox events, as asgi_drain hands them; 10 and up are WebSocket.
EV_REQUEST = 0  # (0, req, parts): a request whose scope C could not build
EV_BODY = 1  # (1, req, data, more_body)
EV_DISCONNECT = 2  # (2, req)
EV_SENT = 3  # (3, req, ok): also ws_accept / ws_send / ws_close completions
EV_SHUTDOWN = 4  # (4, 0): drain the requests, then run the lifespan shutdown
EV_REQUEST_SCOPE = 5  # (5, req, scope, has_body): the scope built in C, without "state"
EV_ABANDON = 6  # (6, 0): stop waiting for the requests still running: cancel them now
EV_WS_CONNECT = 10  # (10, req, parts): parts as for EV_REQUEST
EV_WS_MESSAGE = 11  # (11, req, data, is_text)
EV_WS_CLOSE = 12  # (12, req, code, reason): the client closed or the connection failed

# ASGI outbox commands (the C side appends them; Go carries them out).
CMD_START = 0  # http.response.start
CMD_BODY = 1  # http.response.body
CMD_RECEIVE = 2  # the app awaits the next body chunk
CMD_PATHSEND = 3  # http.response.pathsend
CMD_EARLY_HINT = 4  # http.response.early_hint
CMD_TRAILERS = 5  # http.response.trailers
CMD_FINISH = 6  # asgi_finish
CMD_WS_ACCEPT = 100  # websocket.accept
CMD_WS_SEND = 101  # websocket.send
CMD_WS_CLOSE = 102  # websocket.close
CMD_WS_CREDIT = 103  # the app may take one more message

# How a request ended: serve()'s result (WSGI), asgi_finish's code (ASGI).
OK = 0  # WebSocket: 403 if never accepted, close 1000 if accepted and still open
APP_ERROR = 1  # failed before the response started: Go answers 500 (WSGI: or 400)
APP_ERROR_AFTER_HEADERS = 2  # WSGI: the response is half sent: abort the connection
APP_ERROR_AFTER_START = 2  # ASGI: the response is half sent: Go aborts (WebSocket: close 1011)
CLIENT_GONE = 3  # the client disconnected: nothing more to do
STOPPED = 4  # ASGI: the server ended the exchange: 503 if nothing was sent, else abort (close 1001)
TIMED_OUT = 5  # ASGI: request_timeout: 504 if nothing was sent, else abort (close 1001)
BRIDGE_ERROR = -1  # WSGI: serve itself failed (the C bridge logs why)

# What the native write and sendfile calls hear from Go besides success.
WRITE_CLIENT_GONE = -1
WRITE_INVALID = -2  # an invalid response (headers, a file)
WRITE_NO_MEMORY = -3  # a frame could not be appended

# What serve() may hand back whole: a body of several chunks, joined (the C
# side's whole-response buffer), and one bytes object (the outbox's limit).
WHOLE_MAX = 32 * 1024
WHOLE_BYTES_MAX = 256 * 1024

# Levels of _caddysnake.log.
LOG_DEBUG = 0
LOG_INFO = 1
LOG_WARNING = 2
LOG_ERROR = 3
