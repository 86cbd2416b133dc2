package engine

// #include <stddef.h>
import "C"

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
	"unsafe"
)

// Request body helpers shared by WSGI and ASGI: the small body read before
// the app starts (preload), the idle timeout on reads, full duplex and what
// happens to the connection after a body not read to its end, and the
// answer to a body that failed.

var errBodyMemory = errors.New("python: out of memory for a request body")

// preloadMax is the largest request body read before the app starts.
const preloadMax = 64 << 10

// preloadLen says whether a request's body is read whole before the app
// starts, and its length, or -1 if not: a small body of known length. WSGI's
// wsgi.input then hands it out without a call into Go from the worker
// thread (such a call waits for a Go P), and an ASGI app's first receive()
// gets it without a round trip. Not for a client that waits for "100
// Continue" (the app may refuse the upload), nor for bodies of unknown or
// large size (streamed: the app may answer while they arrive).
func preloadLen(r *Request) int {
	n := r.ContentLength
	if n <= 0 || n > preloadMax || r.Body == nil || r.Header.Get("Expect") != "" {
		return -1
	}
	return int(n)
}

// readPreload reads the whole body (preloadLen's n bytes) into the C memory
// at p, where the app's bytes are made from: no Go buffer in between. The
// whole of it must arrive within timeout (request_body_timeout; 0: none).
func readPreload(w ResponseWriter, r *Request, p *C.char, n int, timeout time.Duration) error {
	if timeout > 0 {
		// One deadline for the whole small body (at most preloadMax), not
		// one per read (bench/README.md, "Measurements behind the design").
		if w.SetReadDeadline(time.Now().Add(timeout)) == nil {
			defer w.SetReadDeadline(time.Time{})
		}
	}
	if _, err := io.ReadFull(r.Body, unsafe.Slice((*byte)(unsafe.Pointer(p)), n)); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("request body shorter than its Content-Length: %w", err)
		}
		return err
	}
	return nil
}

// allowFullDuplex lets an app read the request body while it writes its
// response. By default an HTTP/1 server first consumes whatever body is
// left when the response starts, so an app echoing an upload line by line
// (or an ASGI app streaming while it receives) would stall until the client
// finished sending. HTTP/2 and 3 are full duplex already. It says whether
// the request is HTTP/1 with a body: endBody then has to run.
func allowFullDuplex(w ResponseWriter, r *Request) bool {
	if r.ProtoMajor == 1 && r.Body != nil && r.ContentLength != 0 {
		_ = w.EnableFullDuplex()
		return true
	}
	return false
}

// endBody runs as an HTTP/1 request with a body is done in the bridge
// (eof: the body was read to its end). A server left to itself reads what
// is left of a body before it writes the response, and closes the
// connection if that read fails: what follows a broken body must not be
// parsed as the next request. Full duplex skips that step, so the bridge
// has the connection closed after the response itself. It returns false
// when the response must be aborted instead: its headers went out and the
// connection could not be marked for closing.
func endBody(w ResponseWriter, r *Request, eof, headersSent bool) bool {
	if eof || r.ProtoMajor != 1 {
		return true
	}
	return w.CloseAfterResponse() || !headersSent
}

// bodyReader reads a request body with an idle timeout: each read may wait
// at most timeout for the next bytes (the connection's read deadline, which
// HTTP/1 full duplex and HTTP/2 streams both honour; where it is not
// supported, as on HTTP/3, reads are not bounded). The deadline is cleared
// after each read: left armed, it would cut the server's background read
// that watches for the client leaving or the next request on the
// connection.
type bodyReader struct {
	body    io.Reader
	w       ResponseWriter
	timeout time.Duration
	// Set by whoever cuts the read short (WSGI writeOff, ASGI
	// stopBodyReader) before it sets a deadline of now: that deadline must
	// stand, so the reader neither arms nor clears one after it.
	cut *atomic.Bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.cut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if b.w.SetReadDeadline(time.Now().Add(b.timeout)) != nil {
		return b.body.Read(p)
	}
	// Checked again after arming: a cut whose deadline this arming may
	// have replaced is seen here; a later one sets its deadline after it.
	if b.cut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := b.body.Read(p)
	if !b.cut.Load() {
		_ = b.w.SetReadDeadline(time.Time{})
	}
	return n, err
}

// bodyError is the answer to a request whose body could not be read, when
// the app failed because of it before responding: 413 over a request_body
// limit, 408 when the client stopped sending for request_body_timeout, else
// 400 (a malformed or cut-short body is the client's fault).
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return statusError(http.StatusRequestEntityTooLarge, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return statusError(http.StatusRequestTimeout, fmt.Errorf("request body: no bytes for request_body_timeout: %w", err))
	}
	return statusError(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
}

// eofReader is a body that has ended: a request without one.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
