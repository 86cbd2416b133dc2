// Package worker serves an app from worker processes: Caddy starts them from
// its own binary (caddy python-worker), each embedding CPython through the
// engine, and passes them requests already parsed, as frames over a Unix
// socket pair. This file is the wire format both sides speak.
package worker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
)

// A frame is a 12-byte header, then its payload:
//
//	u32 payload length, u8 type, u8 flags, u16 zero, u32 stream
//
// Stream 0 is the connection itself (ready, shutdown); each request has a
// stream of its own, chosen by the Caddy side, never reused while in flight.
const headerLen = 12

// MaxPayload bounds one frame's payload: a request's head (1 MiB of header
// fields at most, Caddy's limit) and body chunks fit.
const MaxPayload = 2 << 20

// Frame types. Caddy to worker:
const (
	FrameRequest  = 1 // payload: the request's head (EncodeRequest)
	FrameBody     = 2 // payload: a body chunk, sent for one FrameWantBody
	FrameBodyEnd  = 3 // the body ended; flags&FlagError: payload is why it failed
	FrameCancel   = 4 // the client is gone: the worker's Done fires
	FrameCredit   = 5 // payload: u32 response bytes written to the client
	FrameShutdown = 6 // stream 0: finish what runs, take no more, then exit
	FrameAbandon  = 7 // stream 0: give up on what still runs, then exit
)

// Worker to Caddy:
const (
	FrameReady    = 20 // stream 0, payload: the app's start-up fields (JSON)
	FrameHead     = 21 // payload: u16 status, then header pairs (EncodePairs)
	FrameData     = 22 // payload: response bytes, counted against the window
	FrameFlush    = 23 // send what was written so far
	FrameWantBody = 24 // the app reads: send the next body chunk
	FrameEnd      = 25 // payload: the result (EncodeEnd); the stream is over
	FrameLoadFail = 26 // stream 0, payload: why the app did not load
	// FrameWhole is a whole small response and the stream's end, as
	// FrameHead, FrameData and an OK FrameEnd would say it: the head's
	// payload, then u32 length and the body (not counted against the
	// window); flags as FrameEnd's.
	FrameWhole = 30
)

// Flags.
const (
	FlagError = 1 << 0 // FrameBodyEnd: the body failed (payload: the error)
	FlagClose = 1 << 1 // FrameEnd: close the connection after the response
)

// Window is how many response bytes of one stream may be in flight
// (sent by the worker, not yet written to the client): the back-pressure
// a slow client puts on the app, as in process.
const Window = 1 << 20

// Frame is one decoded frame; Payload is valid until the next ReadFrame.
type Frame struct {
	Type    uint8
	Flags   uint8
	Stream  uint32
	Payload []byte
	// File is a FrameFile's descriptor (wire_fd.go): the caller owns it
	// and must close it.
	File *os.File
}

// Reader reads frames from one connection (one goroutine).
type Reader struct {
	r   *bufio.Reader
	buf []byte
	fds *fdSource // NewFileReader's: the passed descriptors
}

func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

var errTooLarge = errors.New("worker wire: frame payload over MaxPayload")

// ReadFrame returns the next frame; io.EOF when the peer closed cleanly
// between frames.
func (rd *Reader) ReadFrame() (Frame, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(rd.r, h[:]); err != nil {
		return Frame{}, err
	}
	n := binary.LittleEndian.Uint32(h[0:])
	if n > MaxPayload {
		return Frame{}, errTooLarge
	}
	if cap(rd.buf) < int(n) {
		rd.buf = make([]byte, n)
	}
	p := rd.buf[:n]
	if _, err := io.ReadFull(rd.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f := Frame{Type: h[4], Flags: h[5], Stream: binary.LittleEndian.Uint32(h[8:]), Payload: p}
	if f.Type == FrameFile {
		if err := rd.claimFile(&f); err != nil {
			return Frame{}, err
		}
	}
	return f, nil
}

// Writer writes frames to one connection from many goroutines; each frame
// goes out whole. Writes are buffered until Flush or a full buffer.
type Writer struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
	// kick wakes the flusher (NewCoalescingWriter), quit stops it.
	kick, quit chan struct{}
	stopOnce   sync.Once
	// uc is w when it is a Unix socket: WriteFile passes descriptors on it.
	uc *net.UnixConn
}

func NewWriter(w io.Writer) *Writer {
	uc, _ := w.(*net.UnixConn)
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), uc: uc}
}

// NewCoalescingWriter returns a Writer whose WriteFrame(flush) does not
// write at once: a flusher goroutine lets the goroutines ready to run
// queue their frames first, then sends them all in one write (one syscall,
// one wake-up of the peer, for many streams under load). Stop ends it.
func NewCoalescingWriter(w io.Writer) *Writer {
	wr := NewWriter(w)
	wr.kick, wr.quit = make(chan struct{}, 1), make(chan struct{})
	go wr.flusher()
	return wr
}

func (wr *Writer) flusher() {
	for {
		select {
		case <-wr.kick:
		case <-wr.quit:
			return
		}
		runtime.Gosched()
		_ = wr.Flush()
	}
}

// Stop ends a coalescing Writer's flusher and sends what is queued.
func (wr *Writer) Stop() {
	if wr.quit != nil {
		wr.stopOnce.Do(func() { close(wr.quit) })
	}
	_ = wr.Flush()
}

// WriteFrame queues one frame; flush sends it (and whatever was queued).
func (wr *Writer) WriteFrame(typ, flags uint8, stream uint32, flush bool, payload ...[]byte) error {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	if n > MaxPayload {
		return errTooLarge
	}
	var h [headerLen]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(n))
	h[4], h[5] = typ, flags
	binary.LittleEndian.PutUint32(h[8:], stream)
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if wr.err != nil {
		return wr.err
	}
	if _, err := wr.w.Write(h[:]); err != nil {
		wr.err = err
		return err
	}
	for _, p := range payload {
		if _, err := wr.w.Write(p); err != nil {
			wr.err = err
			return err
		}
	}
	if flush && wr.kick != nil {
		nudge(wr.kick)
	} else if flush {
		if err := wr.w.Flush(); err != nil {
			wr.err = err
			return err
		}
	}
	return nil
}

// Flush sends what is queued.
func (wr *Writer) Flush() error {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if wr.err != nil {
		return wr.err
	}
	if wr.w.Buffered() > 0 {
		wr.err = wr.w.Flush()
	}
	return wr.err
}

// Encoder appends length-prefixed strings (u32 little endian, then bytes).
type Encoder struct{ B []byte }

func (e *Encoder) Str(s string) {
	e.B = binary.LittleEndian.AppendUint32(e.B, uint32(len(s)))
	e.B = append(e.B, s...)
}

func (e *Encoder) U32(v uint32) { e.B = binary.LittleEndian.AppendUint32(e.B, v) }

// Decoder reads what Encoder wrote; Err says whether it ran short.
type Decoder struct {
	B   []byte
	Err error
}

func (d *Decoder) U32() uint32 {
	if len(d.B) < 4 {
		d.Err = fmt.Errorf("worker wire: payload cut short")
		d.B = nil
		return 0
	}
	v := binary.LittleEndian.Uint32(d.B)
	d.B = d.B[4:]
	return v
}

func (d *Decoder) Str() string {
	n := d.U32()
	if d.Err != nil || uint32(len(d.B)) < n {
		d.Err = fmt.Errorf("worker wire: payload cut short")
		d.B = nil
		return ""
	}
	s := string(d.B[:n])
	d.B = d.B[n:]
	return s
}

// nudge sends on ch without blocking: when ch is full, the wake-up it
// holds already covers this one. (The engine has its own, unexported.)
func nudge(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
