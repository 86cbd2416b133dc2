package worker

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// Caddy's side of one request served by a worker: the frames the worker
// sends are queued by the proc's read loop and applied to the real
// ResponseWriter on Serve's goroutine; the request body is read on a
// goroutine of its own, one chunk per FrameWantBody.

// bodyChunk is the largest FrameBody Caddy sends.
const bodyChunk = 64 << 10

// Body error kinds a FrameBodyEnd with FlagError carries.
const (
	BodyErrOther    = 0
	BodyErrTooLarge = 1 // over the size limit: 413
	BodyErrDeadline = 2 // request_body_timeout passed: 408
)

// event is a frame from the worker, its payload copied out of the reader;
// file is a FrameFile's descriptor (stream_file.go), the event's to close.
type event struct {
	typ, flags uint8
	p          []byte
	file       *os.File
}

type stream struct {
	pr     *proc
	id     uint32
	opened time.Time // for the stuck-stream check (recycle.go)
	// streaming: an ASGI response sent more than its head (or the stream
	// turned into something else): exempt from request_timeout.
	streaming atomic.Bool

	mu     sync.Mutex
	events []event
	dead   bool          // the worker died
	wake   chan struct{} // cap 1: events or dead changed
	// closed: the stream ended, a file that arrives now is closed at once
	// (dropFiles). sending is the writer a file is sent to, which cut
	// (FrameFileCut, the worker's death) makes fail (stream_file.go).
	closed  bool
	sending engine.ResponseWriter
	cut     bool

	// want gets a token per FrameWantBody while the body pump runs;
	// bodyOver once it sent FrameBodyEnd or stopped.
	want     chan struct{}
	bodyOver atomic.Bool

	ws atomic.Pointer[wsRelay] // the WebSocket once accepted (stream_ws.go)
}

func newStream(pr *proc) *stream {
	return &stream{pr: pr, wake: make(chan struct{}, 1), want: make(chan struct{}, 1)}
}

// fromWorker runs on the read loop: it must not block.
func (s *stream) fromWorker(f Frame) {
	if f.Type == FrameWantBody {
		if s.bodyOver.Load() {
			_ = s.pr.send(FrameBodyEnd, 0, s.id)
			return
		}
		nudge(s.want)
		return
	}
	if f.Type == FrameWSCredit {
		d := &Decoder{B: f.Payload}
		if n := d.U32(); d.Err == nil && s.ws.Load() != nil {
			s.ws.Load().credit(int(n))
		}
		return
	}
	if f.Type == FrameFileCut {
		// Off the read loop: an HTTP/2 stream's deadline waits for its
		// connection's serve loop.
		go s.cutSend()
		return
	}
	if f.Type != FrameHead && s.pr.pool.asgi {
		s.streaming.Store(true)
	}
	ev := event{typ: f.Type, flags: f.Flags, p: append([]byte(nil), f.Payload...), file: f.File}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		closeFiles([]event{ev})
		return
	}
	s.events = append(s.events, ev)
	s.mu.Unlock()
	nudge(s.wake)
}

// fail: the worker died with s in flight. A file it passed and Caddy is
// sending is cut: the response cannot end well any more.
func (s *stream) fail() {
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
	go s.cutSend()
	nudge(s.wake)
}

// take returns the queued events and whether the worker died.
func (s *stream) take(into []event) ([]event, bool) {
	s.mu.Lock()
	into = append(into, s.events...)
	clear(s.events)
	s.events = s.events[:0]
	dead := s.dead
	s.mu.Unlock()
	return into, dead
}

// errDeadBeforeOpen: the worker picked died, or was retired (recycle,
// reload), before the request reached it: Serve picks another.
var errDeadBeforeOpen = errors.New("worker process gone")

// serve sends r to the worker and relays its answer to w.
func (pr *proc) serve(r *engine.Request, w engine.ResponseWriter, bodyTimeout time.Duration) error {
	e := &Encoder{}
	EncodeRequest(e, r)
	pr.opening.RLock()
	s := pr.open()
	if s == nil {
		pr.opening.RUnlock()
		return errDeadBeforeOpen
	}
	defer pr.closeStream(s)
	// Not flushed yet: the body's first frames (or its end) go with it.
	err := pr.w.WriteFrame(FrameRequest, 0, s.id, false, e.B)
	pr.opening.RUnlock()
	if err != nil {
		return errDeadBeforeOpen
	}
	var pump *bodyPump
	// A length of 0 is no body (net/http's GET has a Body that is not
	// NoBody): no pump, which would find the body unread at the end and
	// close the connection after every response.
	if r.Body == nil || r.ContentLength == 0 {
		s.bodyOver.Store(true)
		_ = pr.send(FrameBodyEnd, 0, s.id)
	} else {
		if r.ProtoMajor == 1 && r.ContentLength != 0 {
			// The worker may answer while the body arrives (see the
			// engine's allowFullDuplex).
			_ = w.EnableFullDuplex()
		}
		pump = &bodyPump{s: s, r: r, w: w, timeout: bodyTimeout, stop: make(chan struct{}), done: make(chan struct{})}
		eager := r.ContentLength > 0 && r.ContentLength <= bodyChunk && r.Header.Get("Expect") == ""
		if !eager {
			_ = pr.w.Flush()
		}
		go pump.run(eager)
	}

	res, closeAfter, headWritten := s.relay(r, w, pump)
	if pump != nil {
		pump.finish()
		if r.ProtoMajor == 1 && !pump.eof && !closeAfter {
			// What follows a body not read to its end cannot be parsed.
			if !w.CloseAfterResponse() && res == nil && headWritten {
				res = engine.ErrAbort
			}
		}
	}
	return res
}

// relay applies the worker's frames to w until FrameEnd or its death.
// It returns Serve's result, whether CloseAfterResponse was called and
// whether the response's head went out.
func (s *stream) relay(r *engine.Request, w engine.ResponseWriter, pump *bodyPump) (res error, closeAfter, headWritten bool) {
	var evs []event
	// A return mid-batch leaves events unserved: their files are closed.
	defer func() { closeFiles(evs) }()
	broken, cancelled := false, false
	// owed: response bytes written to the client, not credited yet. The
	// credit goes back once half the window is owed, not per FrameData:
	// the worker waits only with the whole window out, so it is never
	// left waiting, and a small response costs no FrameCredit at all.
	owed := 0
	done := r.Done
	cancel := func() {
		if !cancelled {
			cancelled = true
			_ = s.pr.send(FrameCancel, 0, s.id)
		}
	}
	for {
		var dead bool
		evs, dead = s.take(evs[:0])
		for i, ev := range evs {
			switch ev.typ {
			case FrameHead:
				d := &Decoder{B: ev.p}
				status := int(d.U32())
				h := DecodeHeader(d)
				if d.Err != nil || status < 100 || status > 999 {
					cancel()
					broken = true
					continue
				}
				if headWritten {
					continue
				}
				setHeader(w.Header(), h)
				w.WriteHeader(status)
				if status >= 200 {
					headWritten = true
				}
			case FrameData:
				if !broken {
					if !headWritten {
						headWritten = true // Write sends 200 and the headers as they stand
					}
					if _, err := w.Write(ev.p); err != nil {
						broken = true
						cancel()
					}
				}
				owed += len(ev.p)
			case FrameFile:
				evs[i].file = nil // sendFile closes it
				skip := broken || cancelled
				if !skip {
					headWritten = true // SendFile sends the head first, as Write
				}
				gone, short := s.sendFile(w, ev, skip)
				if short {
					// No response that did not finish may look like it did.
					broken = true
				}
				if gone {
					cancel()
				}
			case FrameFlush:
				if !broken {
					if err := w.Flush(); err != nil {
						broken = true
						cancel()
					}
				}
			case FrameTrailers:
				d := &Decoder{B: ev.p}
				h := DecodeHeader(d)
				if d.Err == nil {
					for k, vs := range h {
						w.Header()[k] = vs
					}
				}
			case FrameWSAccept:
				if !headWritten {
					headWritten = true // the handshake is answered, one way or the other
					s.acceptWS(w, ev.p)
				}
			case FrameWSSend, FrameWSClose:
				if ws := s.ws.Load(); ws != nil {
					ws.fromWorker(ev)
				}
			case FrameWhole:
				d := &Decoder{B: ev.p}
				status := int(d.U32())
				h := DecodeHeader(d)
				n := d.U32()
				if d.Err != nil || status < 200 || status > 999 || uint32(len(d.B)) != n || headWritten {
					// A worker that breaks the protocol: as a dead one.
					cancel()
					if headWritten {
						return engine.ErrAbort, closeAfter, true
					}
					return &engine.Error{Status: http.StatusBadGateway,
						Err: fmt.Errorf("python: worker process %d of %q sent a malformed response", s.pr.pid, s.pr.pool.name)}, closeAfter, false
				}
				setHeader(w.Header(), h)
				if ev.flags&FlagClose != 0 {
					// Before the head: net/http adds "Connection: close"
					// only while it is unwritten, and a client not told
					// would send its next request into a closing
					// connection.
					w.CloseAfterResponse()
					closeAfter = true
				}
				w.WriteHeader(status)
				headWritten = true
				if n > 0 {
					if _, err := w.Write(d.B); err != nil {
						res = engine.ErrAbort
					}
				}
				return res, closeAfter, headWritten
			case FrameEnd:
				if ws := s.ws.Load(); ws != nil {
					ws.end(false)
				}
				if ev.flags&FlagClose != 0 {
					w.CloseAfterResponse()
					closeAfter = true
				}
				res = DecodeEnd(ev.p)
				if broken && res == nil {
					res = engine.ErrAbort
				}
				return res, closeAfter, headWritten
			}
		}
		if owed >= Window/2 {
			var c Encoder
			c.U32(uint32(owed))
			_ = s.pr.send(FrameCredit, 0, s.id, c.B)
			owed = 0
		}
		if dead {
			if ws := s.ws.Load(); ws != nil {
				ws.end(true)
				return nil, closeAfter, true
			}
			if headWritten {
				return engine.ErrAbort, closeAfter, true
			}
			return &engine.Error{Status: http.StatusBadGateway,
				Err: fmt.Errorf("python: worker process %d of %q died while serving the request", s.pr.pid, s.pr.pool.name)}, closeAfter, false
		}
		select {
		case <-s.wake:
		case <-done:
			done = nil
			pump.settle()
			cancel()
		}
	}
}

// setHeader makes dst exactly src, but for the fields Caddy sets itself.
func setHeader(dst, src http.Header) {
	for k := range dst {
		if _, ok := src[k]; !ok && k != "Server" && k != "Alt-Svc" {
			delete(dst, k)
		}
	}
	for k, vs := range src {
		dst[k] = vs
	}
}

// bodyPump reads the request body for the worker: eagerly for a small body
// of known length, else one chunk per FrameWantBody. Each read may wait at
// most timeout (request_body_timeout) for the client.
type bodyPump struct {
	s       *stream
	r       *engine.Request
	w       engine.ResponseWriter
	timeout time.Duration
	stop    chan struct{}
	done    chan struct{}
	cut     atomic.Bool
	reading atomic.Bool // a Body read is in progress: finish must cut it
	idle    atomic.Bool // waiting for a FrameWantBody, no read under way
	eof     bool        // the body was read to its end (read once done is closed)
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, bodyChunk); return &b }}

func (b *bodyPump) run(eager bool) {
	defer close(b.done)
	defer b.s.bodyOver.Store(true)
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	if eager {
		n := int(b.r.ContentLength)
		if b.timeout > 0 && b.w.SetReadDeadline(time.Now().Add(b.timeout)) == nil {
			defer func() {
				if !b.cut.Load() {
					_ = b.w.SetReadDeadline(time.Time{})
				}
			}()
		}
		_, err := b.readBody(func() (int, error) { return io.ReadFull(b.r.Body, buf[:n]) })
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("request body shorter than its Content-Length: %w", err)
			}
			b.end(err)
			return
		}
		_ = b.s.pr.w.WriteFrame(FrameBody, 0, b.s.id, false, buf[:n])
		b.eof = true
		b.end(nil)
		return
	}
	for {
		b.idle.Store(true)
		select {
		case <-b.s.want:
		case <-b.stop:
			return
		}
		b.idle.Store(false)
		for {
			n, err := b.read(buf)
			if n > 0 {
				_ = b.s.pr.send(FrameBody, 0, b.s.id, buf[:n])
			}
			if err == io.EOF {
				b.eof = true
				b.end(nil)
				return
			}
			if err != nil {
				b.end(err)
				return
			}
			if n > 0 {
				break
			}
		}
	}
}

// read is one body read under the idle deadline; a cut (finish) stands.
func (b *bodyPump) read(p []byte) (int, error) {
	if b.cut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if b.timeout <= 0 || b.w.SetReadDeadline(time.Now().Add(b.timeout)) != nil {
		return b.readBody(func() (int, error) { return b.r.Body.Read(p) })
	}
	n, err := b.readBody(func() (int, error) { return b.r.Body.Read(p) })
	if !b.cut.Load() {
		_ = b.w.SetReadDeadline(time.Time{})
	}
	return n, err
}

// readBody runs one read of the body with reading set, unless finish cut
// the pump first. Paired with finish (cut, then reading; here reading, then
// cut): either finish sees the read and cuts it, or the read never starts.
func (b *bodyPump) readBody(read func() (int, error)) (int, error) {
	b.reading.Store(true)
	defer b.reading.Store(false)
	if b.cut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	return read()
}

// end sends FrameBodyEnd: err nil at the body's end, else why it failed.
func (b *bodyPump) end(err error) {
	b.s.bodyOver.Store(true)
	if err == nil {
		_ = b.s.pr.send(FrameBodyEnd, 0, b.s.id)
		return
	}
	if b.cut.Load() {
		return // the stream is over: no one waits for it
	}
	kind := uint32(BodyErrOther)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		kind = BodyErrTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		kind = BodyErrDeadline
	}
	var e Encoder
	e.U32(kind)
	e.Str(err.Error())
	_ = b.s.pr.send(FrameBodyEnd, FlagError, b.s.id, e.B)
}

// settle waits a moment for the pump to end when the request's context
// ends while it reads: a read that fails (request_body_timeout, a cut
// body) cancels the context before it returns, and its FrameBodyEnd must
// reach the worker before FrameCancel, or the app sees "client gone" and
// answers 400 instead of 408.
func (b *bodyPump) settle() {
	if b == nil || b.idle.Load() {
		return
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C:
	}
}

// finish stops the pump once the stream ended: a read in progress is cut
// (the deadline of now stands), and the pump is gone when it returns, so
// the body is not touched after Serve. Only a read in progress is cut: a
// deadline set on a connection with no read pending fails net/http's own
// background read, which cancels the connection's context and with it the
// next request on a kept-alive connection (a spurious 499).
func (b *bodyPump) finish() {
	select {
	case <-b.done:
		return
	default:
	}
	b.cut.Store(true)
	close(b.stop)
	if b.reading.Load() {
		_ = b.w.SetReadDeadline(time.Now())
	}
	<-b.done
}
