package worker

import (
	"encoding/binary"
	"errors"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
)

// reqStream is one request in the worker: the engine's Request, its body as
// it arrives from Caddy, and the engine.ResponseWriter that turns the
// app's answer into frames.
type reqStream struct {
	s    *workerConn
	id   uint32
	req  engine.Request
	body *reqBody

	done     chan struct{} // the request's Done: FrameCancel or the end
	doneOnce sync.Once

	readDL, writeDL *waitDeadline

	// The response, written on Serve's goroutine (or under the engine's
	// lock): the header map the app fills, and a copy of it as the last
	// FrameHead sent it, to find the trailers.
	header      http.Header
	sentHeader  http.Header
	wroteHeader bool
	closeAfter  atomic.Bool
	// held: the final head (head, encoded) and the body's first bytes
	// (whole, at most wholeMax) not sent yet, so that a small response
	// travels as one FrameWhole when Serve returns.
	held  bool
	head  []byte
	whole []byte

	// credit is how many response bytes may still be sent before Caddy
	// says it wrote some to the client (wire.Window at first).
	creditMu   sync.Mutex
	avail      int
	creditNews chan struct{}

	ws atomic.Pointer[workerWS] // once the app accepts a WebSocket (serve_ws.go)

	// The files passed to Caddy (serve_file.go): the last FrameFile's
	// sequence, and the FrameFileDone answers.
	fileSeq  uint32
	fileAcks chan fileAck
}

// dataFrameMax bounds one FrameData: a large write goes out in pieces, each
// sent as soon as the window allows.
const dataFrameMax = 256 << 10

func newReqStream(s *workerConn, id uint32) *reqStream {
	return &reqStream{
		s: s, id: id,
		done:       make(chan struct{}),
		readDL:     newWaitDeadline(),
		writeDL:    newWaitDeadline(),
		header:     make(http.Header),
		avail:      Window,
		creditNews: make(chan struct{}, 1),
		fileAcks:   make(chan fileAck, 1),
	}
}

// prepare finishes the Request once its head is decoded: its body (none
// when its length is 0, as net/http's NoBody) and Done.
func (st *reqStream) prepare() {
	st.req.Done = st.done
	if st.req.ContentLength == 0 {
		return
	}
	st.body = &reqBody{st: st, news: make(chan struct{}, 1), left: st.req.ContentLength}
	// A small body of known length comes unasked, right after the
	// request (the same rule as the engine's preload): the worker never
	// asks for it.
	cl := st.req.ContentLength
	st.body.eager = cl > 0 && cl <= eagerBodyMax && st.req.Header.Get("Expect") == ""
	st.body.asked = st.body.eager
	st.req.Body = st.body
}

// eagerBodyMax is the largest body Caddy sends without being asked.
const eagerBodyMax = 64 << 10

// serve runs the app for the stream and ends it.
func (st *reqStream) serve() {
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				st.s.logger.Error("python worker: panic serving a request", zap.Any("panic", p), zap.Stack("stack"))
				err = engine.ErrAbort
				if !st.wroteHeader {
					err = &engine.Error{Status: http.StatusInternalServerError, Err: errors.New("python worker: panic")}
				}
			}
		}()
		err = st.s.app.Serve(&st.req, st)
	}()
	if err == nil && !st.wroteHeader {
		// net/http answers 200 to a handler that wrote nothing; here the
		// header map the app filled goes with it.
		st.WriteHeader(http.StatusOK)
	}
	st.finish(err)
	st.s.ended(st.id)
}

// wholeMax bounds the body a FrameWhole carries.
const wholeMax = 16 << 10

// finish sends what ends the stream: one FrameWhole for a small response
// held whole, else the trailers, if any, then FrameEnd.
func (st *reqStream) finish(err error) {
	if st.held && err == nil && len(st.trailers()) == 0 {
		var flags uint8
		if st.closeAfter.Load() {
			flags = FlagClose
		}
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(st.whole)))
		_ = st.s.wr.WriteFrame(FrameWhole, flags, st.id, true, st.head, n[:], st.whole)
		st.held = false
		st.cancel()
		st.readDL.stop()
		st.writeDL.stop()
		return
	}
	if st.held {
		_ = st.release()
	}
	if err == nil && st.wroteHeader {
		if tr := st.trailers(); len(tr) > 0 {
			e := &Encoder{}
			EncodeHeader(e, tr)
			_ = st.s.wr.WriteFrame(FrameTrailers, 0, st.id, false, e.B)
		}
	}
	e := &Encoder{}
	EncodeEnd(e, err)
	var flags uint8
	if st.closeAfter.Load() {
		flags = FlagClose
	}
	_ = st.s.wr.WriteFrame(FrameEnd, flags, st.id, true, e.B)
	st.cancel()
	if ws := st.ws.Load(); ws != nil {
		ws.drop()
	}
	st.readDL.stop()
	st.writeDL.stop()
}

// trailers are the header keys whose values changed or appeared since the
// last FrameHead (ASGI's trailers are "Trailer:"-prefixed keys, as
// net/http takes them).
func (st *reqStream) trailers() http.Header {
	var tr http.Header
	for k, vs := range st.header {
		if old, ok := st.sentHeader[k]; ok && slices.Equal(old, vs) {
			continue
		}
		if tr == nil {
			tr = make(http.Header)
		}
		tr[k] = vs
	}
	return tr
}

// cancel closes Done: the client is gone, or the stream is over.
func (st *reqStream) cancel() { st.doneOnce.Do(func() { close(st.done) }) }

// credit returns n bytes to the window (FrameCredit).
func (st *reqStream) credit(n int) {
	st.creditMu.Lock()
	st.avail += n
	st.creditMu.Unlock()
	nudge(st.creditNews)
}

var errClientGone = errors.New("python worker: the client went away")

// reserve waits until the window has room and takes up to n bytes of it.
func (st *reqStream) reserve(n int) (int, error) {
	for {
		st.creditMu.Lock()
		if st.avail > 0 {
			n = min(n, st.avail, dataFrameMax)
			st.avail -= n
			st.creditMu.Unlock()
			return n, nil
		}
		st.creditMu.Unlock()
		// What was queued must reach Caddy before it can be credited.
		if err := st.s.wr.Flush(); err != nil {
			return 0, err
		}
		select {
		case <-st.creditNews:
		case <-st.done:
			return 0, errClientGone
		case <-st.writeDL.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// The engine.ResponseWriter methods.

func (st *reqStream) Header() http.Header { return st.header }

// WriteHeader sends the status and the header map as it stands: 1xx
// (early hints) as often as the app sends them, the final status once.
func (st *reqStream) WriteHeader(status int) {
	if st.wroteHeader {
		return
	}
	e := &Encoder{}
	e.U32(uint32(status))
	EncodeHeader(e, st.header)
	informational := status >= 100 && status < 200
	if informational {
		// A 1xx goes out at once, as net/http writes it.
		_ = st.s.wr.WriteFrame(FrameHead, 0, st.id, true, e.B)
		return
	}
	// The final head is held: it goes with the body's first bytes, or
	// the whole response in one frame.
	st.wroteHeader = true
	st.sentHeader = st.header.Clone()
	st.held, st.head = true, e.B
}

// release sends the held head and body bytes as FrameHead and FrameData.
func (st *reqStream) release() error {
	st.held = false
	if err := st.s.wr.WriteFrame(FrameHead, 0, st.id, false, st.head); err != nil {
		return err
	}
	body := st.whole
	st.head, st.whole = nil, nil
	_, err := st.writeData(body)
	return err
}

func (st *reqStream) Write(p []byte) (int, error) {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if st.held {
		if len(st.whole)+len(p) <= wholeMax {
			st.whole = append(st.whole, p...)
			return len(p), nil
		}
		if err := st.release(); err != nil {
			return 0, err
		}
	}
	return st.writeData(p)
}

// writeData sends p as FrameData, as the window allows.
func (st *reqStream) writeData(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n, err := st.reserve(len(p))
		if err != nil {
			return written, err
		}
		if err := st.s.wr.WriteFrame(FrameData, 0, st.id, false, p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

func (st *reqStream) Flush() error {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if st.held {
		if err := st.release(); err != nil {
			return err
		}
	}
	// The app's own flush goes out at once, not with the next coalesced
	// write: what it flushed reaches Caddy even if the process dies next.
	if err := st.s.wr.WriteFrame(FrameFlush, 0, st.id, false); err != nil {
		return err
	}
	return st.s.wr.Flush()
}

func (st *reqStream) SetReadDeadline(t time.Time) error  { st.readDL.set(t); return nil }
func (st *reqStream) SetWriteDeadline(t time.Time) error { st.writeDL.set(t); return nil }

// EnableFullDuplex: Caddy's side enables it for an HTTP/1 request with a
// body, as the engine would (it streams the body while the response is
// written).
func (st *reqStream) EnableFullDuplex() error { return nil }

// CloseAfterResponse is passed on with FrameEnd (FlagClose).
func (st *reqStream) CloseAfterResponse() bool {
	st.closeAfter.Store(true)
	return true
}

var _ engine.ResponseWriter = (*reqStream)(nil)
