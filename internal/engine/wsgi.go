package engine

// #include "wsgi_lanes.h"
// #include <stdlib.h>
import "C"

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
)

// WSGIApp is one imported WSGI callable and the threads that run it.
type WSGIApp struct {
	target string
	interp *interpreter
	obj    *C.PyObject
	pool   *pool
	logger *zap.Logger
	opts   WSGIOptions
	origin string // the folder the app's module came from
}

// WSGIOptions says what to import and how to run it.
type WSGIOptions struct {
	Target      string // "module:attribute"
	WorkingDir  string
	DefaultDir  string // the working_dir when WorkingDir is "" (Caddy's working folder)
	Venv        string
	Threads     int
	MaxWait     time.Duration
	Timeout     time.Duration // request_timeout; 0: off
	BodyTimeout time.Duration // request_body_timeout; 0: off
}

// LoadWSGI imports the app into it and starts its threads. The app owns
// it from then on: Close (or a failed load) ends a sub-interpreter.
func LoadWSGI(it *interpreter, opts WSGIOptions, logger *zap.Logger) (*WSGIApp, error) {
	obj, origin, err := it.loadApp(appSource{target: opts.Target, workingDir: opts.WorkingDir,
		defaultDir: opts.DefaultDir, venv: opts.Venv, iface: "wsgi"})
	if err != nil {
		it.end()
		return nil, err
	}
	p, err := newPool(it, obj, opts.Threads, opts.MaxWait, opts.Timeout)
	if err != nil {
		it.release(obj)
		it.end()
		return nil, err
	}
	return &WSGIApp{target: opts.Target, interp: it, obj: obj, pool: p, logger: logger, opts: opts, origin: origin}, nil
}

// Close stops taking requests; the threads finish what they serve, then the
// app object is dropped and a sub-interpreter ended.
func (a *WSGIApp) Close() {
	a.pool.close(func(leaked bool) {
		if leaked {
			// A thread written off may still run the app in this
			// interpreter: the app, its lane and a sub-interpreter stay.
			a.logger.Warn("python: a worker thread written off after a timeout has not come back; "+
				"the replaced app's interpreter is left running", zap.String("app", a.target))
			return
		}
		a.interp.release(a.obj)
		a.interp.end()
	})
}

// wsgiRequest is one request in flight; the C callbacks reach it through
// its slot's handle while the app runs.
type wsgiRequest struct {
	app         *WSGIApp
	w           ResponseWriter
	r           *Request
	headersSent bool
	bodyErr     error  // why reading the body failed, if it did
	bodyEOF     bool   // the body was read to its end
	lastErr     string // message for the exception C raises
	refused     bool   // Go refused the app's headers (a bridge bug)
	// request_timeout (wsgi_timeouts.go): RequestTimeout was raised in the
	// request's thread; the thread was written off (lost); the Python stack
	// it was stuck in.
	interrupted bool
	lost        bool
	stack       string
	writing     atomic.Int32 // go_read / go_write / go_sendfile calls in progress
	cut         atomic.Bool  // writeOff cut a read or write in progress (wsgi_timeouts.go)
}

var requestPool = sync.Pool{New: func() any { return new(wsgiRequest) }}

// Serve runs one request through the app on one of its worker threads.
func (a *WSGIApp) Serve(r *Request, w ResponseWriter) error {
	hasBody := allowFullDuplex(w, r)
	if !a.pool.enter() {
		if hasBody {
			endBody(w, r, false, false)
		}
		return statusError(http.StatusServiceUnavailable, ErrStopped)
	}
	defer a.pool.leave()
	sl := a.pool.get()
	// Even on a panic: the slot goes back only once the job is over (run
	// returns after the result came, or after the job left the queue), and
	// never once it was written off (its thread may still write into it).
	defer func() {
		if !sl.lost {
			a.pool.put(sl)
		}
	}()
	req := requestPool.Get().(*wsgiRequest)
	*req = wsgiRequest{app: a, w: w, r: r}
	rc, err := req.run(sl)
	if hasBody && !endBody(w, r, req.bodyEOF, req.headersSent) {
		return ErrAbort // the connection could not be marked for closing
	}
	if req.interrupted || req.lost {
		return a.timedOut(req, rc)
	}
	headersSent, bodyErr, refused := req.headersSent, req.bodyErr, req.refused
	*req = wsgiRequest{}
	requestPool.Put(req)
	if err != nil {
		if bodyErr != nil {
			return bodyError(bodyErr) // endBody above closed the connection
		}
		switch err {
		case ErrBusy, ErrStopped, errBodyMemory:
			return statusError(http.StatusServiceUnavailable, err)
		default:
			return statusError(499, err) // client closed request, nginx's code
		}
	}
	switch {
	case refused && !headersSent:
		return statusError(http.StatusInternalServerError, fmt.Errorf("python app %s: invalid response headers", a.target))
	case rc == wsgiOK, rc == wsgiClientGone:
		return nil
	case headersSent:
		// PEP 3333 "Error Handling": once headers are out the status cannot
		// change; abort the connection so the client sees a broken response
		// rather than a truncated one that looks complete.
		return ErrAbort
	case bodyErr != nil:
		return bodyError(bodyErr)
	default:
		return statusError(http.StatusInternalServerError, fmt.Errorf("python app %s raised an exception (traceback logged above)", a.target))
	}
}

// run has the request served in slot s, published for the callbacks (which
// come from a worker thread while this goroutine waits), sending what the
// app writes as it comes.
func (req *wsgiRequest) run(s *slot) (int, error) {
	s.seq.Add(1)
	s.cur.Store(req)
	defer s.cur.Store(nil)
	// A body sent by reference goes back to Python even if sending panics:
	// the slot may be freed next, and the reference with it. Not a job
	// written off: its lost thread drops it, if it comes back.
	defer func() {
		if !req.lost {
			C.caddysnake_job_release_body(s.job)
		}
	}()
	// A small body goes straight into the job's C buffer: wsgi.input makes
	// its bytes from there, with no copy in between.
	bodyLen := preloadLen(req.r)
	if bodyLen >= 0 {
		p := C.caddysnake_job_body(s.job, C.int64_t(bodyLen))
		if p == nil {
			return 0, errBodyMemory
		}
		if err := readPreload(req.w, req.r, p, bodyLen, req.app.opts.BodyTimeout); err != nil {
			req.bodyErr = err
			return 0, err
		}
		req.bodyEOF = true
	}
	mark := uint64(s.handle())
	s.run.Store(mark) // for the watcher (wsgi_timeouts.go)
	defer s.run.Store(0)
	st := req.app.pool.stats
	if st != nil {
		// For the admin view (wsgi_stats.go): probe finds the request's
		// Inflight here once a thread took the job.
		s.track.Store(req.r.Track)
		defer s.track.Store(nil)
	}
	if err := req.app.pool.submit(s, s.marshal(req.r), bodyLen, req.r.Done); err != nil {
		if st != nil && err == ErrBusy {
			st.QueueWait.Observe(req.app.pool.maxWait) // it waited that long, in vain
		}
		return 0, err
	}
	rc := req.collect(s, mark)
	if req.lost {
		return rc, nil
	}
	// The job is over: its clock stamps (C's, taken as it was queued and
	// taken) are plain reads.
	if started := int64(s.job.started_ns); st != nil && started >= int64(s.job.queued_ns) {
		st.QueueWait.Observe(time.Duration(started - int64(s.job.queued_ns)))
	}
	if s.job.interrupted != 0 { // final now: the job finished (a plain read, no cgo call)
		req.interruptedJob(s)
	}
	if out := s.job.out; out.n > 0 && !req.sendWhole(out) {
		rc = wsgiBridgeError
	}
	return rc, nil
}

// collect sends the job's frames as the worker thread appends them, until the job
// finished (run then sends a response the app produced whole), or until
// the watcher gave up on it (req.lost). Returns the job's result code.
func (req *wsgiRequest) collect(s *slot, mark uint64) int {
	var t C.cs_take
	gone := false
	for {
		<-s.news
		if s.writeOff.Load() == mark && req.writeOff(s) {
			return wsgiBridgeError
		}
		C.caddysnake_job_take(s.job, &t)
		if t.len > 0 {
			if !gone && !req.sendFrames(unsafe.Slice((*byte)(unsafe.Pointer(t.frames)), int(t.len))) {
				gone = true
			}
			C.caddysnake_job_sent(s.job, boolInt(gone))
		}
		if t.finished != 0 {
			break
		}
	}
	return int(t.rc)
}

// sendFrames sends frames (wsgi_lanes.h, cs_frame) to the client; false once it
// cannot (the client left, or the headers were refused).
func (req *wsgiRequest) sendFrames(b []byte) bool {
	for len(b) > 0 {
		status := int(int32(binary.NativeEndian.Uint32(b[0:])))
		flush := binary.NativeEndian.Uint32(b[4:]) != 0
		nhdrs := int(binary.NativeEndian.Uint32(b[8:]))
		datalen := int(binary.NativeEndian.Uint32(b[12:]))
		b = b[16:]
		if status != 0 {
			strs := make([]string, 2*nhdrs)
			size := 0
			for i := range strs {
				n := int(binary.NativeEndian.Uint32(b))
				strs[i] = string(b[4 : 4+n])
				size += n
				b = b[4+n:]
			}
			if req.writeHeader(status, nhdrs, size, func(i int) (string, string) { return strs[2*i], strs[2*i+1] }) != 0 {
				// Headers over the size limit (Python checked the rest).
				// Nothing was sent: Serve answers 500.
				req.app.logger.Error("python: invalid response; answering 500", zap.String("method", req.r.Method),
					zap.String("uri", req.r.Target), zap.String("error", req.lastErr))
				req.refused = true
				return false
			}
		}
		if datalen > 0 {
			if _, err := req.w.Write(b[:datalen]); err != nil {
				return false
			}
			b = b[datalen:]
		}
		if flush {
			if err := req.w.Flush(); err != nil {
				return false
			}
		}
	}
	return true
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// sendWhole sends a response the app produced whole, which
// the worker thread copied into out (header name, value pairs, then the
// body), now that Python is done with the request.
func (req *wsgiRequest) sendWhole(out *C.cs_out) bool {
	n := int(out.n)
	ends := unsafe.Slice((*int32)(unsafe.Pointer(out.ends)), n)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(out.buf)), int(ends[n-1]))
	str := func(i int) []byte {
		start := int32(0)
		if i > 0 {
			start = ends[i-1]
		}
		return buf[start:ends[i]]
	}
	headerBytes := 0
	if n > 1 {
		headerBytes = int(ends[n-2])
	}
	if req.writeHeader(int(out.status), (n-1)/2, headerBytes, func(i int) (string, string) {
		return string(str(2 * i)), string(str(2*i + 1))
	}) != 0 {
		// Headers over the size limit (Python checked the rest).
		req.app.logger.Error("python: invalid response; answering 500", zap.String("method", req.r.Method),
			zap.String("uri", req.r.Target), zap.String("error", req.lastErr))
		req.refused = true
		return false
	}
	body := str(n - 1)
	if out.body != nil { // the app's bytes object itself (wsgi_out.h, cs_out)
		body = unsafe.Slice((*byte)(unsafe.Pointer(out.body)), int(out.body_len))
	}
	// A write error means the client is gone: nothing left to tell anyone.
	_, _ = req.w.Write(body)
	return true
}

// marshal lays out the request for caddysnake_lane_submit as back-to-back
// strings in the slot's reused buffer, in the order of the req tuple that
// caddysnake.wsgi.build_environ reads:
//
//	method, script_name, path_info, query_string, server_protocol,
//	url_scheme, server_name, server_port, remote_addr, remote_port,
//	then header name, value pairs (one pair per value).
//
// The buffer holds no Go pointers, so passing it to C needs no pinning.
func (s *slot) marshal(r *Request) int {
	c := &s.strs
	c.reset()
	scheme := "http"
	if r.TLS {
		scheme = "https"
	}
	serverName, serverPort := r.serverAddr(scheme)
	remoteAddr, remotePort := r.remoteAddr()
	c.add(r.Method)
	c.add(r.ScriptName)
	c.add(r.Path)
	c.add(r.RawQuery)
	c.add(protocol(r))
	c.add(scheme)
	c.add(serverName)
	c.add(serverPort)
	c.add(remoteAddr)
	c.add(remotePort)
	c.add("Host")
	c.add(r.Host)
	c.addHeaders(r.Header, false)
	return len(c.ends)
}

// protocol is SERVER_PROTOCOL as negotiated.
func protocol(r *Request) string {
	switch r.ProtoMajor {
	case 3:
		return "HTTP/3"
	case 2:
		return "HTTP/2.0"
	}
	return r.Proto
}

func freeAll(ps ...*C.char) {
	for _, p := range ps {
		C.free(unsafe.Pointer(p))
	}
}
