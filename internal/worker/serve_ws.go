package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// The worker's side of a WebSocket: the engine.WebSocket the worker's
// engine drives as it would coder/websocket's, each call a frame to Caddy,
// which holds the connection (stream_ws.go).

// wsCloseWait bounds how long a Close waits for Caddy's answer: Caddy's
// own Close waits a few seconds for the client's close frame.
const wsCloseWait = 10 * time.Second

type workerWS struct {
	st  *reqStream
	seq atomic.Uint32

	// answers gets FrameWSAccepted's (seq: its result) and FrameWSDone's.
	answers chan wsAnswer

	mu      sync.Mutex
	inbox   []wsMessage // messages Caddy sent, not yet read
	partial []byte      // the pieces so far of the next one
	end     *engine.CloseError
	gone    bool          // CloseNow, or the stream ended
	news    chan struct{} // cap 1: inbox, end or gone changed
}

type wsMessage struct {
	text bool
	data []byte
}

type wsAnswer struct {
	seq uint32
	ok  bool
	why string
}

// AcceptWebSocket asks Caddy to answer the handshake with the headers set
// so far and waits for how it went.
func (st *reqStream) AcceptWebSocket(o engine.WebSocketOptions) (engine.WebSocket, error) {
	if st.wroteHeader || st.ws.Load() != nil {
		return nil, errors.New("python worker: the response began before the WebSocket handshake")
	}
	ws := &workerWS{st: st, answers: make(chan wsAnswer, 4), news: make(chan struct{}, 1)}
	st.ws.Store(ws)
	e := &Encoder{}
	e.Str(o.Subprotocol)
	e.Str(o.Compression)
	e.U32(uint32(uint64(o.MaxMessage) >> 32))
	e.U32(uint32(o.MaxMessage))
	EncodeHeader(e, st.header)
	st.wroteHeader = true
	st.sentHeader = st.header.Clone() // no trailers after a handshake
	if err := st.s.wr.WriteFrame(FrameWSAccept, 0, st.id, true, e.B); err != nil {
		return nil, err
	}
	select {
	case a := <-ws.answers:
		switch {
		case a.ok:
			return ws, nil
		case a.seq == wsSubprotocolRefused:
			return nil, engine.ErrSubprotocolNotOffered
		default:
			return nil, errors.New("python worker: websocket handshake failed: " + a.why)
		}
	case <-st.done:
		return nil, errClientGone
	}
}

// fromCaddy takes a WebSocket frame on the read loop: it must not block.
func (ws *workerWS) fromCaddy(f Frame) {
	d := &Decoder{B: f.Payload}
	switch f.Type {
	case FrameWSAccepted:
		result := d.U32()
		ws.answer(wsAnswer{seq: result, ok: d.Err == nil && result == wsAccepted, why: d.Str()})
	case FrameWSDone:
		seq, ok := d.U32(), d.U32()
		ws.answer(wsAnswer{seq: seq, ok: d.Err == nil && ok == 1})
	case FrameWSMessage:
		ws.mu.Lock()
		ws.partial = append(ws.partial, f.Payload...)
		if f.Flags&FlagMore == 0 {
			ws.inbox = append(ws.inbox, wsMessage{text: f.Flags&FlagText != 0, data: ws.partial})
			ws.partial = nil
		}
		ws.mu.Unlock()
		nudge(ws.news)
	case FrameWSEnd:
		code, reason := int(d.U32()), d.Str()
		if d.Err != nil {
			code, reason = engine.WSAbnormalClosure, ""
		}
		ws.mu.Lock()
		ws.end = &engine.CloseError{Code: code, Reason: reason}
		ws.mu.Unlock()
		nudge(ws.news)
	}
}

func (ws *workerWS) answer(a wsAnswer) {
	select {
	case ws.answers <- a:
	default: // nobody waits for it any more
	}
}

// drop: the stream is over; a blocked read returns.
func (ws *workerWS) drop() {
	ws.mu.Lock()
	ws.gone = true
	ws.mu.Unlock()
	nudge(ws.news)
}

// ReadMessage returns the next message Caddy read from the client and
// gives its credit back; the close once the client's side ended.
func (ws *workerWS) ReadMessage(ctx context.Context) (bool, []byte, error) {
	for {
		ws.mu.Lock()
		if len(ws.inbox) > 0 {
			m := ws.inbox[0]
			ws.inbox[0] = wsMessage{}
			ws.inbox = ws.inbox[1:]
			ws.mu.Unlock()
			var e Encoder
			e.U32(1)
			_ = ws.st.s.wr.WriteFrame(FrameWSCredit, 0, ws.st.id, true, e.B)
			return m.text, m.data, nil
		}
		end, gone := ws.end, ws.gone
		ws.mu.Unlock()
		if end != nil {
			return false, nil, end
		}
		if gone {
			return false, nil, &engine.CloseError{Code: engine.WSAbnormalClosure}
		}
		select {
		case <-ws.news:
		case <-ctx.Done():
			return false, nil, ctx.Err()
		}
	}
}

// WriteMessage sends one message and waits until Caddy wrote it.
func (ws *workerWS) WriteMessage(ctx context.Context, text bool, data []byte) error {
	seq := ws.seq.Add(1)
	var h Encoder
	h.U32(seq)
	err := eachPiece(text, data, func(flags uint8, piece []byte) error {
		return ws.st.s.wr.WriteFrame(FrameWSSend, flags, ws.st.id, flags&FlagMore == 0, h.B, piece)
	})
	if err != nil {
		return err
	}
	return ws.wait(ctx, seq, 0)
}

// Close sends a close frame with code and reason; Caddy waits a little for
// the client's.
func (ws *workerWS) Close(code int, reason string) error {
	seq := ws.seq.Add(1)
	var e Encoder
	e.U32(seq)
	e.U32(uint32(code))
	e.Str(reason)
	if err := ws.st.s.wr.WriteFrame(FrameWSClose, 0, ws.st.id, true, e.B); err != nil {
		return err
	}
	return ws.wait(context.Background(), seq, wsCloseWait)
}

// CloseNow has Caddy drop the connection; a blocked read returns.
func (ws *workerWS) CloseNow() error {
	var e Encoder
	e.U32(0)
	e.U32(0)
	e.Str("")
	err := ws.st.s.wr.WriteFrame(FrameWSClose, FlagNow, ws.st.id, true, e.B)
	ws.drop()
	return err
}

var errWSNotSent = errors.New("python worker: websocket message not sent")

// wait waits for the FrameWSDone of seq (older answers are stale: their
// caller gave up), at most bound (0: none).
func (ws *workerWS) wait(ctx context.Context, seq uint32, bound time.Duration) error {
	var timeout <-chan time.Time
	if bound > 0 {
		t := time.NewTimer(bound)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case a := <-ws.answers:
			if a.seq != seq {
				continue
			}
			if !a.ok {
				return errWSNotSent
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return errWSNotSent
		}
	}
}
