package engine

// #include "caddysnake.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unsafe"

	"go.uber.org/zap"
)

// WebSocket for ASGI apps (ASGI WebSocket spec 2.4). The request goroutine
// does the handshake and the writes, as for HTTP; a reader goroutine reads
// ahead of the app within a window of credits that caddysnake.asgi returns one per
// message consumed, so a client's close is seen even while the app is busy,
// and a flood of messages waits in the client's socket, not in our memory.

// DefaultWSMaxMessage bounds one incoming message (as uvicorn's ws_max_size).
const DefaultWSMaxMessage = 16 << 20

// wsCreditWindow is how many unread messages may wait for the app.
const wsCreditWindow = 16

type asgiWebSocket struct {
	conn       WebSocket
	closed     bool // we sent a close frame
	ctx        context.Context
	cancel     context.CancelFunc
	credits    chan struct{}
	readerDone chan struct{}
}

// isWebSocketUpgrade: an HTTP/1.1 GET asking to switch to websocket
// (RFC 6455 4.1).
func isWebSocketUpgrade(r *Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerHasToken(r.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func (req *asgiRequest) doWebSocket(c *asgiCmd) {
	ws := req.ws
	ok := true
	switch c.kind {
	case cmdWSAccept:
		ok = req.acceptWebSocket(c)
	case cmdWSCredit:
		if ws.credits != nil {
			nudge(ws.credits) // caddysnake.asgi grants at most one per message handed out
		}
		return
	case cmdWSSend:
		if ws.conn == nil || ws.closed {
			ok = false
			break
		}
		ok = ws.conn.WriteMessage(ws.ctx, c.more, c.data) == nil
	case cmdWSClose:
		if ws.conn == nil {
			// ASGI: a close before accept rejects the handshake with 403.
			if !req.headerWritten {
				req.status = http.StatusForbidden
				req.writeHeader()
			}
			break
		}
		if !ws.closed {
			ws.closed = true
			ok = ws.conn.Close(c.code, c.path) == nil
		}
	}
	req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: ok})
}

func (req *asgiRequest) acceptWebSocket(c *asgiCmd) bool {
	ws := req.ws
	if ws.conn != nil || req.headerWritten {
		return false
	}
	if bad := req.checkPairs(c.headers, true); bad != "" {
		// The handshake's answer is still held: 500 instead of the 101.
		req.refuse("websocket.accept: " + bad)
		req.writeHeader()
		return false
	}
	h := req.w.Header()
	for _, kv := range c.headers {
		h.Add(kv[0], kv[1])
	}
	conn, err := req.w.AcceptWebSocket(WebSocketOptions{
		Subprotocol: c.path,
		Compression: req.app.opts.WSCompression,
		MaxMessage:  req.app.opts.WSMaxMessage,
	})
	req.headerWritten = true // the handshake was answered, one way or the other
	if errors.Is(err, ErrSubprotocolNotOffered) {
		// RFC 6455 4.1 has the client fail such a connection, so it must
		// not be upgraded: the transport dropped it, as Daphne does.
		req.app.logger.Error("websocket.accept chose a subprotocol the client did not offer; handshake refused, connection closed",
			zap.String("subprotocol", c.path), zap.Strings("offered", req.r.Header.Values("Sec-WebSocket-Protocol")),
			zap.String("path", req.r.Path))
		return false
	}
	if err != nil {
		req.app.logger.Debug("websocket handshake failed", zap.Error(err))
		return false
	}
	ws.conn = conn
	ws.ctx, ws.cancel = context.WithCancel(context.Background())
	ws.credits = make(chan struct{}, wsCreditWindow)
	for i := 0; i < wsCreditWindow; i++ {
		ws.credits <- struct{}{}
	}
	ws.readerDone = make(chan struct{})
	go req.readWebSocket()
	return true
}

func (req *asgiRequest) readWebSocket() {
	ws := req.ws
	defer close(ws.readerDone)
	for {
		select {
		case <-ws.credits:
		case <-ws.ctx.Done():
			return
		}
		text, data, err := ws.conn.ReadMessage(ws.ctx)
		if err != nil {
			code, reason := CloseOf(err)
			req.app.post(asgiEvent{kind: evWSClose, handle: req.handle, code: code, data: []byte(reason)})
			return
		}
		req.app.post(asgiEvent{kind: evWSMessage, handle: req.handle, data: data, flag: text})
	}
}

// finishWebSocket ends the exchange as the ASGI spec says for each outcome.
func (req *asgiRequest) finishWebSocket(code int) error {
	ws := req.ws
	if ws.conn == nil {
		switch {
		case code == asgiClientGone:
			return nil
		case code == asgiStopped && !req.headerWritten:
			return statusError(http.StatusServiceUnavailable, ErrStopped)
		case req.headerWritten: // a denial response, or the 403 of a close
			if code == asgiComplete {
				return nil
			}
			return ErrAbort
		case code == asgiComplete:
			return statusError(http.StatusForbidden, fmt.Errorf("python app %s ended without accepting the WebSocket", req.app.target))
		default:
			return statusError(http.StatusInternalServerError,
				fmt.Errorf("python app %s failed before accepting the WebSocket (see the log above)", req.app.target))
		}
	}
	if !ws.closed {
		switch {
		case req.app.closing.Load() || code == asgiStopped:
			// The app is being stopped or replaced (told going away, or its
			// tasks cancelled): RFC 6455 7.4.1's 1001 tells the client to
			// reconnect, unlike the bare drop it would see for a network
			// failure.
			ws.conn.Close(WSGoingAway, "server restarting")
		case code == asgiComplete:
			ws.conn.Close(WSNormalClosure, "")
		case code == asgiClientGone:
			ws.conn.CloseNow()
		default:
			ws.conn.Close(WSInternalError, "")
		}
	}
	ws.conn.CloseNow() // idempotent: makes sure a blocked Read returns
	ws.cancel()
	<-ws.readerDone
	return nil
}

// The go_ws_* callbacks queue commands like the go_asgi_* ones.

//export go_ws_accept
func go_ws_accept(h C.uintptr_t, sub *C.char, n C.size_t, hdrs *C.cs_str, nh C.size_t) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdWSAccept, path: C.GoStringN(sub, C.int(n)), headers: copyHeaders(hdrs, nh)})
}

//export go_ws_send
func go_ws_send(h C.uintptr_t, data *C.char, n C.size_t, text C.int) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdWSSend, data: unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n)), more: text != 0})
}

//export go_ws_close
func go_ws_close(h C.uintptr_t, code C.int, reason *C.char, n C.size_t) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdWSClose, code: int(code), path: C.GoStringN(reason, C.int(n))})
}

//export go_ws_receive
func go_ws_receive(h C.uintptr_t) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdWSCredit})
}
