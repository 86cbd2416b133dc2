package engine

// The wire codes Go shares with C and Python, taken from codes.h so that
// the three sides cannot drift apart (codes_test.go checks Python's copy).

// #include "codes.h"
// #include "testhooks.h"
// #include <stdlib.h>
import "C"

import (
	"errors"
	"unsafe"
)

// ASGI inbox event kinds (asgi_queues.h; caddysnake/codes.py's EV_*).
const (
	evRequest    = C.CS_EV_REQUEST
	evBody       = C.CS_EV_BODY
	evDisconnect = C.CS_EV_DISCONNECT
	evSendDone   = C.CS_EV_SENT
	evShutdown   = C.CS_EV_SHUTDOWN
	evAbandon    = C.CS_EV_ABANDON
	evWSConnect  = C.CS_EV_WS_CONNECT
	evWSMessage  = C.CS_EV_WS_MESSAGE
	evWSClose    = C.CS_EV_WS_CLOSE
)

// ASGI outbox command kinds: an HTTP request's, from its outbox
// (asgi_http.go), and the WebSocket ones (asgi_websocket.go).
const (
	cmdStart     = C.CS_CMD_START
	cmdBody      = C.CS_CMD_BODY
	cmdReceive   = C.CS_CMD_RECEIVE
	cmdPathsend  = C.CS_CMD_PATHSEND
	cmdEarlyHint = C.CS_CMD_EARLY_HINT
	cmdTrailers  = C.CS_CMD_TRAILERS
	cmdFinish    = C.CS_CMD_FINISH

	cmdWSAccept = C.CS_CMD_WS_ACCEPT
	cmdWSSend   = C.CS_CMD_WS_SEND
	cmdWSClose  = C.CS_CMD_WS_CLOSE
	cmdWSCredit = C.CS_CMD_WS_CREDIT
)

// Result codes of asgi_finish.
const (
	asgiComplete         = C.CS_OK
	asgiFailedBeforeSend = C.CS_APP_ERROR
	asgiFailedAfterSend  = C.CS_APP_ERROR_AFTER_START
	asgiClientGone       = C.CS_CLIENT_GONE
	asgiStopped          = C.CS_STOPPED   // cancelled by the server (stop, reload deadline): 503 or abort
	asgiTimedOut         = C.CS_TIMED_OUT // request_timeout: 504 or abort
)

// Result codes of caddysnake.wsgi.serve (python/caddysnake/wsgi/server.py).
const (
	wsgiOK              = C.CS_OK
	wsgiErrorBeforeSend = C.CS_APP_ERROR               // app raised before any header was sent
	wsgiErrorAfterSend  = C.CS_APP_ERROR_AFTER_HEADERS // app raised mid-response
	wsgiClientGone      = C.CS_CLIENT_GONE
	wsgiBridgeError     = C.CS_BRIDGE_ERROR // serve itself failed; logged by the bridge
)

// Result codes of go_write and go_sendfile besides a byte count.
const (
	goClientGone = C.CS_WRITE_CLIENT_GONE
	goInvalid    = C.CS_WRITE_INVALID
)

// Levels of go_log.
const (
	logDebug   = C.CS_LOG_DEBUG
	logInfo    = C.CS_LOG_INFO
	logWarning = C.CS_LOG_WARNING
	logError   = C.CS_LOG_ERROR
)

// pythonEval returns str() of a Python expression evaluated in the main
// interpreter (starting CPython if need be): for the tests, which cannot
// use cgo (codes_test.go reads _caddysnake and caddysnake.codes with it).
func pythonEval(expr string) (string, error) {
	it, err := mainInterpreter()
	if err != nil {
		return "", err
	}
	var out string
	it.do(func() {
		ce := C.CString(expr)
		defer C.free(unsafe.Pointer(ce))
		var cerr *C.char
		s := C.caddysnake_eval(it.ci, ce, &cerr)
		if s == nil {
			err = errors.New(C.GoString(cerr))
			C.free(unsafe.Pointer(cerr))
			return
		}
		out = C.GoString(s)
		C.free(unsafe.Pointer(s))
	})
	return out, err
}
