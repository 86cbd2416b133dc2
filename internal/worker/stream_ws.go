package worker

import (
	"context"
	"errors"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// Caddy's side of a WebSocket the worker's app accepted: the handshake is
// answered with the transport Caddy has (w.AcceptWebSocket), a reader
// goroutine sends the client's messages to the worker within wsWindow
// credits, and the relay writes the worker's messages and closes.

type wsRelay struct {
	s          *stream
	conn       engine.WebSocket
	ctx        context.Context
	cancel     context.CancelFunc
	credits    chan struct{} // cap wsWindow: messages the worker may get
	readerDone chan struct{}
	closed     bool   // a close frame went out, or the connection was dropped
	msg        []byte // a message from the worker, its pieces so far
}

// acceptWS answers the handshake for a FrameWSAccept and tells the worker
// how it went.
func (s *stream) acceptWS(w engine.ResponseWriter, p []byte) {
	d := &Decoder{B: p}
	var o engine.WebSocketOptions
	o.Subprotocol = d.Str()
	o.Compression = d.Str()
	hi := d.U32()
	o.MaxMessage = int64(uint64(hi)<<32 | uint64(d.U32()))
	h := DecodeHeader(d)
	if d.Err != nil {
		s.answerAccept(wsFailed, d.Err.Error())
		return
	}
	setHeader(w.Header(), h)
	conn, err := w.AcceptWebSocket(o)
	switch {
	case errors.Is(err, engine.ErrSubprotocolNotOffered):
		s.answerAccept(wsSubprotocolRefused, err.Error())
		return
	case err != nil:
		s.answerAccept(wsFailed, err.Error())
		return
	}
	ws := &wsRelay{s: s, conn: conn, credits: make(chan struct{}, wsWindow), readerDone: make(chan struct{})}
	ws.ctx, ws.cancel = context.WithCancel(context.Background())
	for range wsWindow {
		ws.credits <- struct{}{}
	}
	s.ws.Store(ws)
	s.answerAccept(wsAccepted, "")
	go ws.read()
}

func (s *stream) answerAccept(result uint32, why string) {
	var e Encoder
	e.U32(result)
	e.Str(why)
	_ = s.pr.send(FrameWSAccepted, 0, s.id, e.B)
}

// credit returns n messages to the window (FrameWSCredit, on the read loop).
func (ws *wsRelay) credit(n int) {
	for range min(n, wsWindow) {
		select {
		case ws.credits <- struct{}{}:
		default:
			return
		}
	}
}

// read sends the client's messages to the worker, one per credit, then
// how the connection ended.
func (ws *wsRelay) read() {
	defer close(ws.readerDone)
	for {
		select {
		case <-ws.credits:
		case <-ws.ctx.Done():
			return
		}
		text, data, err := ws.conn.ReadMessage(ws.ctx)
		if err != nil {
			if ws.ctx.Err() != nil {
				return // the stream is over: nobody reads the end
			}
			code, reason := engine.CloseOf(err)
			var e Encoder
			e.U32(uint32(code))
			e.Str(reason)
			_ = ws.s.pr.send(FrameWSEnd, 0, ws.s.id, e.B)
			return
		}
		_ = eachPiece(text, data, func(flags uint8, piece []byte) error {
			return ws.s.pr.send(FrameWSMessage, flags, ws.s.id, piece)
		})
	}
}

// fromWorker carries out a FrameWSSend or FrameWSClose on the relay's
// goroutine.
func (ws *wsRelay) fromWorker(ev event) {
	d := &Decoder{B: ev.p}
	seq := d.U32()
	if d.Err != nil {
		return
	}
	var err error
	switch ev.typ {
	case FrameWSSend:
		ws.msg = append(ws.msg, d.B...)
		if ev.flags&FlagMore != 0 {
			return
		}
		msg := ws.msg
		ws.msg = nil
		if ws.closed {
			err = errors.New("websocket closed")
		} else {
			err = ws.conn.WriteMessage(ws.ctx, ev.flags&FlagText != 0, msg)
		}
	case FrameWSClose:
		code, reason := int(d.U32()), d.Str()
		if ev.flags&FlagNow != 0 {
			ws.closed = true
			_ = ws.conn.CloseNow()
			return
		}
		if ws.closed {
			err = errors.New("websocket closed")
		} else {
			ws.closed = true
			err = ws.conn.Close(code, reason)
		}
	}
	var e Encoder
	e.U32(seq)
	ok := uint32(0)
	if err == nil {
		ok = 1
	}
	e.U32(ok)
	_ = ws.s.pr.send(FrameWSDone, 0, ws.s.id, e.B)
}

// end closes what the worker left open once its stream is over: dead, the
// worker died (1001 when it was being stopped or replaced, as in process,
// else 1011), and waits for the reader.
func (ws *wsRelay) end(dead bool) {
	if !ws.closed && dead {
		if ws.s.pr.retired.Load() {
			_ = ws.conn.Close(engine.WSGoingAway, "server restarting")
		} else {
			_ = ws.conn.Close(engine.WSInternalError, "")
		}
	}
	_ = ws.conn.CloseNow()
	ws.cancel()
	<-ws.readerDone
}
