package caddysnake

// #include "lanes.h"
// #include <stdlib.h>
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Result codes of caddysnake.wsgi.serve (python/caddysnake/wsgi.py).
const (
	wsgiOK              = 0
	wsgiErrorBeforeSend = 1 // app raised before any header was sent
	wsgiErrorAfterSend  = 2 // app raised mid-response
	wsgiClientGone      = 3
	wsgiBridgeError     = -1 // serve itself failed; logged by the bridge
)

// WSGIApp is one imported WSGI callable and the threads that run it.
type WSGIApp struct {
	target string
	interp *interpreter
	obj    *C.PyObject
	pool   *pool
	logger *zap.Logger
	opts   WSGIOptions
}

// WSGIOptions says what to import and how to run it.
type WSGIOptions struct {
	Target      string // "module:attribute"
	WorkingDir  string
	Venv        string
	Threads     int
	MaxWait     time.Duration
	Timeout     time.Duration // request_timeout; 0: off
	BodyTimeout time.Duration // request_body_timeout; 0: off
}

// LoadWSGI imports the app into it and starts its threads. The app owns
// it from then on: Close (or a failed load) ends a sub-interpreter.
func LoadWSGI(it *interpreter, opts WSGIOptions, logger *zap.Logger) (*WSGIApp, error) {
	obj, err := it.loadApp(opts.Target, opts.WorkingDir, opts.Venv)
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
	return &WSGIApp{target: opts.Target, interp: it, obj: obj, pool: p, logger: logger, opts: opts}, nil
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
// its worker's handle while the app runs.
type wsgiRequest struct {
	app         *WSGIApp
	w           http.ResponseWriter
	r           *http.Request
	headersSent bool
	bodyErr     error  // why reading the body failed, if it did
	bodyEOF     bool   // the body was read to its end
	lastErr     string // message for the exception C raises
	ctl         *http.ResponseController
	refused     bool                     // Go refused the app's headers (a bridge bug)
	bodyCtl     *http.ResponseController // go_read's, for the body's read deadline
	// request_timeout (timeouts.go): RequestTimeout was raised in the
	// request's thread; the thread was written off (lost); the Python stack
	// it was stuck in.
	interrupted bool
	lost        bool
	stack       string
	writing     atomic.Int32 // go_read / go_write / go_sendfile calls in progress
	cut         atomic.Bool  // writeOff cut a read or write in progress (timeouts.go)
}

var requestPool = sync.Pool{New: func() any { return new(wsgiRequest) }}

// Serve runs one request through the app on one of its worker threads.
func (a *WSGIApp) Serve(w http.ResponseWriter, r *http.Request) error {
	hasBody := allowFullDuplex(w, r)
	if !a.pool.enter() {
		if hasBody {
			endBody(w, r, false, false)
		}
		return caddyhttp.Error(http.StatusServiceUnavailable, ErrStopped)
	}
	defer a.pool.leave()
	wk := a.pool.get()
	// Even on a panic: the slot goes back only once the job is over (run
	// returns after the result came, or after the job left the queue), and
	// never once it was written off (its thread may still write into it).
	defer func() {
		if !wk.lost {
			a.pool.put(wk)
		}
	}()
	req := requestPool.Get().(*wsgiRequest)
	*req = wsgiRequest{app: a, w: w, r: r}
	rc, err := req.run(wk)
	if hasBody && !endBody(w, r, req.bodyEOF, req.headersSent) {
		panic(http.ErrAbortHandler) // the connection could not be marked for closing
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
			return caddyhttp.Error(http.StatusServiceUnavailable, err)
		default:
			return caddyhttp.Error(499, err) // client closed request, nginx's code
		}
	}
	switch {
	case refused && !headersSent:
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("python app %s: invalid response headers", a.target))
	case rc == wsgiOK, rc == wsgiClientGone:
		return nil
	case headersSent:
		// PEP 3333 "Error Handling": once headers are out the status cannot
		// change; abort the connection so the client sees a broken response
		// rather than a truncated one that looks complete.
		panic(http.ErrAbortHandler)
	case bodyErr != nil:
		return bodyError(bodyErr)
	default:
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("python app %s raised an exception (traceback logged above)", a.target))
	}
}

// run has the request served with w published for the callbacks (which
// come from a worker thread while this goroutine waits), sending what the
// app writes as it comes.
func (req *wsgiRequest) run(w *worker) (int, error) {
	w.seq.Add(1)
	w.cur.Store(req)
	defer w.cur.Store(nil)
	// A body sent by reference goes back to Python even if sending panics:
	// the slot may be freed next, and the reference with it. Not a job
	// written off: its lost thread drops it, if it comes back.
	defer func() {
		if !req.lost {
			C.caddysnake_job_release_body(w.job)
		}
	}()
	// A small body goes straight into the job's C buffer: wsgi.input makes
	// its bytes from there, with no copy in between.
	bodyLen := preloadLen(req.r)
	if bodyLen >= 0 {
		p := C.caddysnake_job_body(w.job, C.int64_t(bodyLen))
		if p == nil {
			return 0, errBodyMemory
		}
		if err := readPreload(req.w, req.r, p, bodyLen, req.app.opts.BodyTimeout); err != nil {
			req.bodyErr = err
			return 0, err
		}
		req.bodyEOF = true
	}
	mark := uint64(w.handle())
	w.run.Store(mark) // for the watcher (timeouts.go)
	defer w.run.Store(0)
	if err := req.app.pool.submit(w, w.marshal(req.r), bodyLen, req.r.Context().Done()); err != nil {
		return 0, err
	}
	rc := req.collect(w, mark)
	if req.lost {
		return rc, nil
	}
	if w.job.interrupted != 0 { // final now: the job finished (a plain read, no cgo call)
		req.interruptedJob(w)
	}
	if out := w.job.out; out.n > 0 && !req.sendWhole(out) {
		rc = wsgiBridgeError
	}
	return rc, nil
}

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
func preloadLen(r *http.Request) int {
	n := r.ContentLength
	if n <= 0 || n > preloadMax || r.Body == nil || r.Body == http.NoBody || r.Header.Get("Expect") != "" {
		return -1
	}
	return int(n)
}

// readPreload reads the whole body (preloadLen's n bytes) into the C memory
// at p, where the app's bytes are made from: no Go buffer in between. The
// whole of it must arrive within timeout (request_body_timeout; 0: none).
func readPreload(w http.ResponseWriter, r *http.Request, p *C.char, n int, timeout time.Duration) error {
	if timeout > 0 {
		// One deadline for the whole small body (at most preloadMax), not
		// one per read: re-arming the connection's deadline around each of
		// the dozen reads a 64 KiB body takes cost the 64 KiB echo 7%.
		ctl := http.NewResponseController(w)
		if ctl.SetReadDeadline(time.Now().Add(timeout)) == nil {
			defer ctl.SetReadDeadline(time.Time{})
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

// collect sends the job's frames as the worker appends them, until the job
// finished (run then sends a response the app produced whole), or until
// the watcher gave up on it (req.lost). Returns the job's result code.
func (req *wsgiRequest) collect(w *worker, mark uint64) int {
	var t C.cs_take
	gone := false
	for {
		<-w.news
		if w.writeOff.Load() == mark && req.writeOff(w) {
			return wsgiBridgeError
		}
		C.caddysnake_job_take(w.job, &t)
		if t.len > 0 {
			if !gone && !req.sendFrames(unsafe.Slice((*byte)(unsafe.Pointer(t.frames)), int(t.len))) {
				gone = true
			}
			C.caddysnake_job_sent(w.job, boolInt(gone))
		}
		if t.finished != 0 {
			break
		}
	}
	return int(t.rc)
}

// sendFrames sends frames (lanes.h, cs_frame) to the client; false once it
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
					zap.String("uri", req.r.RequestURI), zap.String("error", req.lastErr))
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
			if req.ctl == nil {
				req.ctl = http.NewResponseController(req.w)
			}
			if err := req.ctl.Flush(); err != nil {
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
// the worker copied into out (header name, value pairs, then the
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
			zap.String("uri", req.r.RequestURI), zap.String("error", req.lastErr))
		req.refused = true
		return false
	}
	body := str(n - 1)
	if out.body != nil { // the app's bytes object itself (caddysnake.h, cs_out)
		body = unsafe.Slice((*byte)(unsafe.Pointer(out.body)), int(out.body_len))
	}
	// A write error means the client is gone: nothing left to tell anyone.
	_, _ = req.w.Write(body)
	return true
}

// marshal lays out the request for caddysnake_lane_submit as back-to-back
// strings in the worker's reused buffer, in the order of the req tuple that
// caddysnake.wsgi.build_environ reads:
//
//	method, script_name, path_info, query_string, server_protocol,
//	url_scheme, server_name, server_port, remote_addr, remote_port,
//	then header name, value pairs (one pair per value).
//
// The buffer holds no Go pointers, so passing it to C needs no pinning.
func (w *worker) marshal(r *http.Request) int {
	c := &w.strs
	c.reset()
	scriptName, pathInfo := splitScriptName(r)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	serverName, serverPort := serverAddr(r, scheme)
	remoteAddr, remotePort := remoteAddr(r)
	c.add(r.Method)
	c.add(scriptName)
	c.add(pathInfo)
	c.add(r.URL.RawQuery)
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

// splitScriptName derives SCRIPT_NAME from a prefix Caddy stripped before
// us (handle_path, uri strip_prefix): the original path ends with the
// current one, and what comes before it is where the app is mounted.
func splitScriptName(r *http.Request) (scriptName, pathInfo string) {
	pathInfo = r.URL.Path
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		op := orig.URL.Path
		if len(op) > len(pathInfo) && strings.HasSuffix(op, pathInfo) {
			scriptName = strings.TrimSuffix(op[:len(op)-len(pathInfo)], "/")
			if pathInfo == "" || pathInfo[0] != '/' {
				pathInfo = "/" + pathInfo
			}
		}
	}
	return scriptName, pathInfo
}

// protocol is SERVER_PROTOCOL as negotiated.
func protocol(r *http.Request) string {
	switch r.ProtoMajor {
	case 3:
		return "HTTP/3"
	case 2:
		return "HTTP/2.0"
	}
	return r.Proto
}

// serverAddr is SERVER_NAME and SERVER_PORT: the host the client asked for,
// and the port from Host or, when Host has none, the listener's.
func serverAddr(r *http.Request, scheme string) (string, string) {
	if host, port, err := net.SplitHostPort(r.Host); err == nil {
		return host, port
	}
	host := strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]")
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, port, err := net.SplitHostPort(la.String()); err == nil {
			return host, port
		}
	}
	if scheme == "https" {
		return host, "443"
	}
	return host, "80"
}

// remoteAddr is the client as Caddy sees it: its client IP honours
// trusted_proxies; the port is known only when that IP is the direct peer.
func remoteAddr(r *http.Request) (string, string) {
	peerHost, peerPort, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		peerHost, peerPort = r.RemoteAddr, ""
	}
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" || ip == peerHost {
		return peerHost, peerPort
	}
	return ip, ""
}

func freeAll(ps ...*C.char) {
	for _, p := range ps {
		C.free(unsafe.Pointer(p))
	}
}

// bodyError is the answer to a request whose body could not be read, when
// the app failed because of it before responding: 413 over a request_body
// limit, 408 when the client stopped sending for request_body_timeout, else
// 400 (a malformed or cut-short body is the client's fault).
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return caddyhttp.Error(http.StatusRequestEntityTooLarge, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return caddyhttp.Error(http.StatusRequestTimeout, fmt.Errorf("request body: no bytes for request_body_timeout: %w", err))
	}
	return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
}
