package worker

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
)

// reqBody is a request body in the worker, pulled from Caddy: a read
// that finds no chunk asks for one (FrameWantBody, once) and waits for
// FrameBody or FrameBodyEnd. The read loop pushes chunks without ever
// blocking; at most one chunk is asked for at a time (or a small body
// comes whole, unasked), so the buffer stays small.
type reqBody struct {
	st   *reqStream
	news chan struct{} // a token when a chunk or the end arrived

	mu     sync.Mutex
	chunks [][]byte
	ended  bool
	err    error // why the body failed on Caddy's side, once ended
	asked  bool  // a FrameWantBody is unanswered (always, for an eager body)
	eager  bool  // the body comes whole and unasked (prepare)
	// left: bytes of a Content-Length body not read yet (-1: unknown).
	// The read that takes the last of them returns io.EOF with them, as
	// net/http's body does in process, without waiting for FrameBodyEnd:
	// an app that reads exactly CONTENT_LENGTH and answers before that
	// frame arrives has still read its body to the end (else the engine
	// closes the connection after the response).
	left int64
}

// push adds a chunk (FrameBody); p is the reader's buffer, so it is copied.
func (b *reqBody) push(p []byte) {
	b.mu.Lock()
	if !b.ended && len(p) > 0 {
		b.chunks = append(b.chunks, append([]byte(nil), p...))
	}
	if !b.eager {
		b.asked = false // the answer to the FrameWantBody
	}
	b.mu.Unlock()
	nudge(b.news)
}

// end records FrameBodyEnd: the body is over, or failed (FlagError).
func (b *reqBody) end(flags uint8, p []byte) {
	b.mu.Lock()
	if !b.ended {
		b.ended = true
		if flags&FlagError != 0 {
			b.err = decodeBodyError(p)
		}
	}
	b.mu.Unlock()
	nudge(b.news)
}

func (b *reqBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		b.mu.Lock()
		if len(b.chunks) > 0 {
			n := copy(p, b.chunks[0])
			if n == len(b.chunks[0]) {
				b.chunks[0] = nil
				b.chunks = b.chunks[1:]
			} else {
				b.chunks[0] = b.chunks[0][n:]
			}
			var err error
			if b.left > 0 {
				if b.left -= int64(n); b.left <= 0 && b.err == nil {
					err = io.EOF
				}
			}
			b.mu.Unlock()
			return n, err
		}
		if b.left == 0 && b.err == nil {
			b.mu.Unlock()
			return 0, io.EOF
		}
		if b.ended {
			err := b.err
			b.mu.Unlock()
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		ask := !b.asked
		b.asked = true
		b.mu.Unlock()
		if ask {
			if err := b.st.s.wr.WriteFrame(FrameWantBody, 0, b.st.id, true); err != nil {
				return 0, err
			}
		}
		select {
		case <-b.news:
		case <-b.st.readDL.wait():
			return 0, os.ErrDeadlineExceeded
		case <-b.st.done:
			return 0, errClientGone
		}
	}
}

// Close: what is left of the body is Caddy's to drop.
func (b *reqBody) Close() error { return nil }

// decodeBodyError rebuilds the error a FrameBodyEnd with FlagError
// carries (u32 kind, then the message), so that the engine maps it as in
// process: 413, 408, else 400.
func decodeBodyError(p []byte) error {
	d := &Decoder{B: p}
	kind, msg := d.U32(), d.Str()
	if d.Err != nil {
		return fmt.Errorf("request body failed (undecodable reason: %v)", d.Err)
	}
	switch kind {
	case BodyErrTooLarge:
		return &remoteTooLarge{msg: msg}
	case BodyErrDeadline:
		return fmt.Errorf("%s: %w", msg, os.ErrDeadlineExceeded)
	}
	return errors.New(msg)
}

// remoteTooLarge is Caddy's *http.MaxBytesError as the worker sees it:
// errors.As finds an *http.MaxBytesError in it, and the message stays
// Caddy's.
type remoteTooLarge struct{ msg string }

func (e *remoteTooLarge) Error() string { return e.msg }

func (e *remoteTooLarge) As(target any) bool {
	if t, ok := target.(**http.MaxBytesError); ok {
		*t = &http.MaxBytesError{}
		return true
	}
	return false
}
