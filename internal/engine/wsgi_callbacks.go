package engine

// The go_* functions below are called from C (wsgi_bridge.c) with the GIL
// released, while a request is in flight: from the worker thread running
// it (reading a large or streamed body, sendfile, logging) or from a thread
// the app started (writes; the worker's own writes go through the job,
// wsgi_lanes.c). They carry the request as a handle (wsgi_pool.go), never a Go
// pointer.

// #include "caddysnake.h"
import "C"

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

var errStaleHandle = errors.New("request is over (handle used outside its request)")

// go_read fills buf from the request body, stopping early only at its end;
// with fill == 0 it returns after the first read that yields anything (what
// readline needs: a line must not wait for more bytes than the client sent).
// Each read waits at most request_body_timeout for the next bytes. spawn:
// worker threads to start first, because the calling worker parked for
// this read (wsgi_lanes.c, caddysnake_lane_park). Returns the byte count, or -1
// with the cause kept for go_error.
//
//export go_read
func go_read(h C.uintptr_t, buf *C.char, n C.size_t, fill C.int, spawn C.int) C.int64_t {
	if spawn > 0 {
		// By slot, not request: the lane counted them even if the request
		// is being written off this instant.
		if s := slotOf(uintptr(h)); s != nil {
			s.pool.spawn(int(spawn))
		}
	}
	// Counted like a write: the request is not written off while its
	// thread reads the body (the handler must not return under it).
	req := enterWriting(uintptr(h))
	if req == nil {
		return -1
	}
	defer req.writing.Add(-1)
	if n == 0 {
		return 0
	}
	p := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
	var body io.Reader = req.r.Body
	if body == nil {
		req.bodyEOF = true
		return 0
	}
	if t := req.app.opts.BodyTimeout; t > 0 {
		body = &bodyReader{body: body, w: req.w, timeout: t, cut: &req.cut}
	}
	got := 0
	for got < len(p) {
		m, err := body.Read(p[got:])
		got += m
		if err == io.EOF {
			req.bodyEOF = true
			break
		}
		if fill == 0 && got > 0 && err == nil {
			break
		}
		if err != nil {
			// Kept so Serve can answer 400/408/413 instead of 500 when the
			// app fails because of it (a truncated or malformed chunked
			// body, a client that stopped sending).
			req.bodyErr = err
			req.lastErr = err.Error()
			return -1
		}
	}
	return C.int64_t(got)
}

// go_write sends the status and headers (when status != 0), then data, and
// flushes it to the client if asked.
//
//export go_write
func go_write(h C.uintptr_t, status C.int, hdrs *C.cs_str, nhdrs C.size_t, data *C.char, n C.size_t, flush C.int) C.int {
	req := enterWriting(uintptr(h))
	if req == nil {
		return goClientGone
	}
	defer req.writing.Add(-1)
	if status != 0 {
		if rc := req.sendHeaders(int(status), hdrs, nhdrs); rc != 0 {
			return rc
		}
	}
	if n > 0 {
		if _, err := req.w.Write(unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n))); err != nil {
			return req.gone(err)
		}
	}
	if flush != 0 {
		if err := req.w.Flush(); err != nil {
			return req.gone(err)
		}
	}
	return 0
}

// go_sendfile sends count bytes (all, if negative) of file descriptor fd
// from offset, letting the kernel copy them (sendfile) where the connection
// allows it. The fd stays the caller's: we send from a duplicate. A file
// that is not regular is refused before the headers go out (files.go); one
// that fails or ends early while it is sent is goInvalid, which aborts the
// response (Serve: the headers went out).
//
//export go_sendfile
func go_sendfile(h C.uintptr_t, status C.int, hdrs *C.cs_str, nhdrs C.size_t, fd C.int, offset C.longlong, count C.longlong) C.int64_t {
	req := enterWriting(uintptr(h))
	if req == nil {
		return goClientGone
	}
	defer req.writing.Add(-1)
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		req.lastErr = "wsgi.file_wrapper: " + err.Error()
		return goInvalid
	}
	f := os.NewFile(uintptr(dup), "wsgi.file_wrapper")
	defer f.Close()
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = notRegular(fdPath(int(fd)), st.Mode())
	}
	if err == nil {
		_, err = f.Seek(int64(offset), io.SeekStart)
	}
	if err != nil {
		req.lastErr = "wsgi.file_wrapper: " + err.Error()
		return goInvalid
	}
	if count < 0 {
		count = C.longlong(max(st.Size()-int64(offset), 0))
	}
	if status != 0 {
		if rc := req.sendHeaders(int(status), hdrs, nhdrs); rc != 0 {
			return C.int64_t(rc)
		}
	}
	sent, err := req.w.SendFile(f, int64(count))
	if err != nil && ClientGone(err) {
		return C.int64_t(req.gone(err))
	}
	if err != nil || sent < int64(count) {
		req.lastErr = fmt.Sprintf("wsgi.file_wrapper: %s: sent %d of %d bytes: ", fdPath(int(fd)), sent, count)
		if err != nil {
			req.lastErr += err.Error()
		} else {
			req.lastErr += "the file ended early"
		}
		return goInvalid
	}
	return C.int64_t(sent)
}

func (req *wsgiRequest) sendHeaders(status int, hdrs *C.cs_str, nhdrs C.size_t) C.int {
	pairs := unsafe.Slice(hdrs, 2*int(nhdrs))
	size := 0
	for _, p := range pairs {
		size += int(p.len)
	}
	return req.writeHeader(status, int(nhdrs), size, func(i int) (string, string) {
		return C.GoStringN(pairs[2*i].data, C.int(pairs[2*i].len)), C.GoStringN(pairs[2*i+1].data, C.int(pairs[2*i+1].len))
	})
}

// writeHeader sends the status and the n header pairs pair returns, size
// bytes of names and values in all. (Python checked each pair already,
// caddysnake/wsgi/checks.py's _check_header; the size is checked here, where it is a sum the
// caller has at hand.)
func (req *wsgiRequest) writeHeader(status, n, size int, pair func(i int) (name, value string)) C.int {
	if req.headersSent {
		req.lastErr = "headers were already sent"
		return goInvalid
	}
	// net/http panics on codes outside 100-999, and 1xx would not end the
	// response; PEP 3333 has no interim responses.
	if status < 200 || status > 999 {
		req.lastErr = "status code must be 200-999"
		return goInvalid
	}
	if size > maxResponseHeaderBytes {
		req.lastErr = headerBytesError(size)
		return goInvalid
	}
	header := req.w.Header()
	for i := 0; i < n; i++ {
		header.Add(pair(i))
	}
	req.w.WriteHeader(status)
	req.headersSent = true
	return 0
}

func (req *wsgiRequest) gone(err error) C.int {
	req.lastErr = err.Error()
	return goClientGone
}

// enterWriting is requestOf for a callback that writes to the client:
// while it runs, the request is not written off (wsgi_timeouts.go), since its
// handler must not return while another thread writes to its connection.
// The caller must req.writing.Add(-1) when done.
func enterWriting(h uintptr) *wsgiRequest {
	s := slotOf(h)
	if s == nil {
		return nil
	}
	req := s.cur.Load()
	if req == nil {
		return nil
	}
	req.writing.Add(1)
	if s.cur.Load() != req { // written off meanwhile (writeOff clears cur first)
		req.writing.Add(-1)
		return nil
	}
	return req
}

// go_error copies the message of the last failure on handle h into buf
// (for the exception C raises) and returns its length.
//
//export go_error
func go_error(h C.uintptr_t, buf *C.char, n C.size_t) C.size_t {
	msg := errStaleHandle.Error()
	if req := requestOf(uintptr(h)); req != nil {
		msg = req.lastErr
	}
	m := copy(unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n)), msg)
	return C.size_t(m)
}

// go_log writes a message from Python (wsgi.errors, tracebacks) to the
// app's logger at level (codes.h: CS_LOG_*), as one entry (logtrace.go).
//
//export go_log
func go_log(h C.uintptr_t, level C.int, msg *C.char, n C.size_t) {
	logPython(loggerFor(uintptr(h)), int(level), C.GoStringN(msg, C.int(n)))
}

// loggerFor finds the logger of whatever a handle names: a WSGI request, an
// ASGI request or an ASGI app.
func loggerFor(h uintptr) *zap.Logger {
	switch handleTag(h) {
	case tagWSGI:
		if req := requestOf(h); req != nil {
			return req.app.logger.With(zap.String("method", req.r.Method), zap.String("uri", req.r.Target))
		}
	case tagASGIRequest:
		if req := asgiRequests.get(h); req != nil {
			return req.app.logger.With(zap.String("method", req.r.Method), zap.String("uri", req.r.Target))
		}
	case tagASGIApp:
		if a := asgiApps.get(h); a != nil {
			return a.logger
		}
	}
	return zap.L().Named("python")
}
