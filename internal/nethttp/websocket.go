package nethttp

import (
	"context"
	"errors"
	"net/http"

	"github.com/caddysnake/caddysnake/internal/engine"
	"github.com/coder/websocket"
)

// AcceptWebSocket answers the handshake with coder/websocket, through
// acceptWriter (wsconform.go: close frames checked, small deflate windows,
// HTTP/2 streams).
func (rw *responseWriter) AcceptWebSocket(o engine.WebSocketOptions) (engine.WebSocket, error) {
	opts := &websocket.AcceptOptions{
		// Origin policy is the app's to enforce (it sees the Origin
		// header), as with other ASGI servers.
		InsecureSkipVerify: true,
		CompressionMode:    compressionMode(o.Compression),
	}
	if o.Subprotocol != "" {
		if !offeredSubprotocol(rw.r, o.Subprotocol) {
			rw.refuseSubprotocol(o.Subprotocol)
			return nil, engine.ErrSubprotocolNotOffered
		}
		opts.Subprotocols = []string{o.Subprotocol}
	}
	w, r := rw.acceptWriter(opts)
	conn, err := websocket.Accept(w, r, opts)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(o.MaxMessage)
	rw.status = http.StatusSwitchingProtocols
	if rw.stats != nil {
		rw.stats.WebSockets.Add(1)
		rw.wsOpen = true
	}
	return webSocket{conn}, nil
}

// webSocket is engine.WebSocket over a coder/websocket connection.
type webSocket struct{ conn *websocket.Conn }

// ReadMessage reads one message (readMessage checks a text message's
// UTF-8); its error carries the close code: 1007 when we failed the
// connection for invalid UTF-8, 1006 when no close frame came.
func (ws webSocket) ReadMessage(ctx context.Context) (bool, []byte, error) {
	typ, data, err := readMessage(ctx, ws.conn)
	if err != nil {
		code := int(websocket.CloseStatus(err))
		if errors.Is(err, errInvalidUTF8) {
			code = int(websocket.StatusInvalidFramePayloadData) // we closed with 1007
		}
		reason := ""
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			reason = ce.Reason
		}
		if code == -1 {
			code = engine.WSAbnormalClosure // no close frame
		}
		return false, nil, &engine.CloseError{Code: code, Reason: reason}
	}
	return typ == websocket.MessageText, data, nil
}

func (ws webSocket) WriteMessage(ctx context.Context, text bool, data []byte) error {
	typ := websocket.MessageBinary
	if text {
		typ = websocket.MessageText
	}
	return ws.conn.Write(ctx, typ, data)
}

func (ws webSocket) Close(code int, reason string) error {
	return ws.conn.Close(websocket.StatusCode(code), reason)
}

func (ws webSocket) CloseNow() error { return ws.conn.CloseNow() }
