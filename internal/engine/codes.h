// codes.h: every number that crosses Go, C and Python, defined once.
//
// Go takes them by these names (codes.go), the _caddysnake module exports
// them to Python without the CS_ prefix (module.c), and
// python/caddysnake/codes.py repeats them as literals so that the package
// imports without _caddysnake; codes_test.go fails if any side disagrees.
// Plain integer macros only (`#define CS_NAME value`): the test parses them.
#ifndef CADDYSNAKE_CODES_H
#define CADDYSNAKE_CODES_H

// ASGI inbox events: the kinds Go posts (asgi_queues.h) and asgi_drain
// hands Python as tuples (asgi_bridge.c, event_object). 10 and up are
// WebSocket.
#define CS_EV_REQUEST 0        // a new HTTP request: its scope parts
#define CS_EV_BODY 1           // a request body chunk, answering one asgi_receive
#define CS_EV_DISCONNECT 2     // the client went away (or its body was malformed)
#define CS_EV_SENT 3           // a send finished (flag: ok)
#define CS_EV_SHUTDOWN 4       // drain the requests, then the lifespan shutdown
#define CS_EV_REQUEST_SCOPE 5  // EV_REQUEST as Python gets it: the scope built in C
#define CS_EV_ABANDON 6        // the deadline for the requests in flight passed: cancel them
#define CS_EV_WS_CONNECT 10    // a new WebSocket connection: its scope parts
#define CS_EV_WS_MESSAGE 11    // a message (flag: text)
#define CS_EV_WS_CLOSE 12      // the client closed (flag: code, data: reason)

// ASGI outbox commands: an HTTP request's commands in its outbox
// (asgi_queues.h, cs_acmd.kind), and the WebSocket ones Go queues for
// itself (asgi_websocket.go).
#define CS_CMD_START 0
#define CS_CMD_BODY 1
#define CS_CMD_RECEIVE 2
#define CS_CMD_PATHSEND 3
#define CS_CMD_EARLY_HINT 4
#define CS_CMD_TRAILERS 5
#define CS_CMD_FINISH 6
#define CS_CMD_WS_ACCEPT 100
#define CS_CMD_WS_SEND 101
#define CS_CMD_WS_CLOSE 102
#define CS_CMD_WS_CREDIT 103

// How a request ended: the result of caddysnake.wsgi.serve, and the code
// of asgi_finish. The first four mean the same in both protocols.
#define CS_OK 0
#define CS_APP_ERROR 1               // the app failed before the response started: Go answers 500
#define CS_APP_ERROR_AFTER_HEADERS 2 // WSGI: the response is half sent: Go aborts it
#define CS_APP_ERROR_AFTER_START 2   // ASGI: the same (WebSocket: close 1011)
#define CS_CLIENT_GONE 3             // the client left: nothing more to do
#define CS_STOPPED 4                 // ASGI: cancelled by the server (stop, reload): 503 or abort
#define CS_TIMED_OUT 5               // ASGI: request_timeout: 504 or abort
#define CS_BRIDGE_ERROR (-1)         // WSGI: serve itself failed (the bridge logged why)

// What go_write and go_sendfile return besides success (>= 0).
#define CS_WRITE_CLIENT_GONE (-1)
#define CS_WRITE_INVALID (-2)   // an invalid response (headers, a file)
#define CS_WRITE_NO_MEMORY (-3) // C only: a frame could not be appended (cs_job_write)

// What caddysnake.wsgi.serve may hand back whole instead of writing it:
// a body of several chunks, joined, up to WHOLE_MAX (it must fit the job's
// whole-response buffer, wsgi_pool.go's wholeResponseBytes), and one bytes
// object up to WHOLE_BYTES_MAX (the frames' OUTBOX_LIMIT, wsgi_lanes.h: a
// larger body is written, its worker waiting while the client lags).
#define CS_WHOLE_MAX 32768
#define CS_WHOLE_BYTES_MAX 262144

// Levels of _caddysnake.log (go_log).
#define CS_LOG_DEBUG 0
#define CS_LOG_INFO 1
#define CS_LOG_WARNING 2
#define CS_LOG_ERROR 3

#endif
