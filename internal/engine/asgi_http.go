package engine

// #include "asgi_queues.h"
import "C"

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
)

// asgiRequest is one HTTP request served by an ASGI app. The loop thread
// only appends commands for it: to its outbox (box, asgi_queues.c) for an
// HTTP request, through the go_asgi_* and go_ws_* callbacks below for a
// WebSocket. Its Serve goroutine carries them out in order, so all
// ResponseWriter use stays on that goroutine.
type asgiRequest struct {
	app    *ASGIApp
	handle uintptr
	w      ResponseWriter
	r      *Request
	strs   cStrings       // scope strings (copied by the post)
	body   []byte         // body chunk buffer
	ws     *asgiWebSocket // non-nil for a WebSocket upgrade (asgi_websocket.go)
	box    *C.cs_areq     // an HTTP request's outbox

	mu     sync.Mutex
	cmds   []asgiCmd
	signal chan struct{} // cap 1: box or cmds has something

	// Owned by the Serve goroutine.
	status        int
	headerWritten bool
	readerStarted bool
	wantBody      chan struct{} // cap 1
	stopReader    chan struct{}
	readerDone    chan struct{}
	bodyErr       error       // set by the reader before it posts evDisconnect
	bodyEOF       bool        // the body was read to its end (by the reader, or preloaded)
	hasBody       bool        // HTTP/1 with a body, full duplex: release must see to the connection
	headerBytes   int         // names and values of the headers and trailers so far
	refusal       string      // why the response is answered 500 instead (headers still held)
	preloaded     bool        // the whole body went with the request event
	trailers      bool        // http.response.start announced trailers
	goneReported  bool        // a failed write was reported as evDisconnect
	cut           atomic.Bool // stopBodyReader cut the body reader's read (bodyReader.cut)
}

type asgiCmd struct {
	kind    int // cmd*, cmdWS* (codes.go)
	status  int
	headers [][2]string
	data    []byte // cmdBody, cmdWSSend: C memory of the outbox, or Python's bytes kept alive by the asgi package until evSendDone
	more    bool   // more_body; more_trailers; for cmdWSSend: a text message
	notify  bool   // cmdBody: Python awaits the completion event
	boxed   bool   // from the outbox: the final message ends the request (no cmdFinish follows)
	path    string // pathsend's path; the WebSocket subprotocol, or close reason
	code    int    // asgi_finish's code; the WebSocket close code
}

var asgiRequestPool = sync.Pool{New: func() any {
	return &asgiRequest{body: make([]byte, asgiBodyChunk), signal: make(chan struct{}, 1)}
}}

// Serve runs one HTTP request through the app.
//
// A request that arrives while the app drains (Close) is still served: a
// kept-alive connection may bring one just after a reload began. The loop
// refuses it (503) once the drain is over.
func (a *ASGIApp) Serve(r *Request, w ResponseWriter) (err error) {
	if a.abandoning.Load() || !a.enter() {
		return statusError(http.StatusServiceUnavailable, ErrStopped)
	}
	defer a.leave() // after release, which closes the outbox
	a.inflight.Add(1)
	defer a.inflight.Add(-1)
	req := asgiRequestPool.Get().(*asgiRequest)
	req.app, req.w, req.r = a, w, r
	kind := evRequest
	if isWebSocketUpgrade(r) {
		kind = evWSConnect
		req.ws = &asgiWebSocket{}
	}
	req.handle = asgiRequests.add(req)
	defer func() {
		if req.release() {
			err = ErrAbort
		}
	}()
	var body *C.char
	bodyLen := -1
	if req.ws == nil {
		if req.box = C.caddysnake_areq_open(a.queues, C.uintptr_t(req.handle)); req.box == nil {
			return statusError(http.StatusServiceUnavailable, errors.New("python: out of memory for an ASGI request"))
		}
		// A small body is read straight into the C block its event keeps:
		// no copy between the socket and the app's bytes.
		if bodyLen = preloadLen(r); bodyLen >= 0 {
			if body = (*C.char)(C.malloc(C.size_t(max(bodyLen, 1)))); body == nil {
				return statusError(http.StatusServiceUnavailable, errBodyMemory)
			}
			if err := readPreload(w, r, body, bodyLen, a.opts.BodyTimeout); err != nil {
				C.free(unsafe.Pointer(body))
				if r.ProtoMajor == 1 {
					w.CloseAfterResponse() // see endBody
				}
				return bodyError(err)
			}
			req.preloaded, req.bodyEOF = true, true
		}
	}
	req.layout()
	req.hasBody = allowFullDuplex(w, r) && req.ws == nil

	// A small body goes with the request, in the same drain: the app's
	// first receive() finds it without a round trip through Go.
	a.post(asgiEvent{kind: kind, handle: req.handle, req: req, body: body, bodyLen: bodyLen})
	ctxDone := r.Done
	for {
		if req.ws != nil && req.ws.conn != nil {
			// Accepted: the connection is the WebSocket reader's to watch.
			ctxDone = nil
		}
		select {
		case <-req.signal:
			if req.box != nil {
				if done, err := req.runBox(); done {
					return err
				}
			}
			req.mu.Lock()
			cmds := req.cmds
			req.cmds = nil
			req.mu.Unlock()
			for i := range cmds {
				if done, err := req.do(&cmds[i]); done {
					return err
				}
			}
		case <-ctxDone:
			ctxDone = nil
			a.post(asgiEvent{kind: evDisconnect, handle: req.handle})
		case <-a.loopDone:
			// The loop may have finished this response just before it
			// stopped, with the news still on its way: send it if so.
			if req.box != nil {
				if done, err := req.runBox(); done {
					return err
				}
			}
			return req.cutShort(http.StatusServiceUnavailable, ErrStopped)
		case <-a.abandoned:
			// The loop did not end this request after Abandon: it is stuck,
			// or the task ignores its cancellation. Stop waiting for it.
			a.logger.Error("ASGI request abandoned: the event loop did not end it after it was cancelled",
				zap.String("module_asgi", a.target), zap.String("method", r.Method), zap.String("uri", r.Target))
			return req.cutShort(http.StatusServiceUnavailable, ErrStopped)
		}
	}
}

// cutShort ends a request the server gave up on: status (503, 504) if
// nothing was sent, else the connection is aborted (HTTP/2: the stream is
// reset), so a response that did not finish never looks like one that did.
// The app's headers, held until its first body, are dropped with it.
func (req *asgiRequest) cutShort(status int, err error) error {
	if req.ws != nil && req.ws.conn != nil {
		req.ws.conn.CloseNow()
		req.ws.cancel()
		<-req.ws.readerDone
		return nil
	}
	if req.headerWritten {
		return ErrAbort
	}
	req.dropHeldHeaders()
	return statusError(status, err)
}

// dropHeldHeaders forgets the headers the app sent with
// http.response.start, held until its first body, before the bridge
// answers instead; the server's own (Caddy's Server, Alt-Svc) stay.
func (req *asgiRequest) dropHeldHeaders() {
	h := req.w.Header()
	for k := range h {
		if k != "Server" && k != "Alt-Svc" {
			delete(h, k)
		}
	}
}

// release ends the request's life in the bridge; true if the response must
// be aborted (the connection could not be marked for closing).
func (req *asgiRequest) release() (abort bool) {
	asgiRequests.remove(req.handle)
	req.stopBodyReader()
	abort = req.hasBody && !endBody(req.w, req.r, req.bodyEOF, req.headerWritten)
	if req.box != nil {
		C.caddysnake_areq_close(req.app.queues, req.box)
	}
	body, signal := req.body, req.signal
	select { // a command queued after finish would otherwise wake the next user
	case <-signal:
	default:
	}
	*req = asgiRequest{body: body, signal: signal, strs: req.strs}
	asgiRequestPool.Put(req)
	return abort
}

// layout writes the scope parts in the order caddysnake.asgi reads them:
//
//	http_version, method, scheme, path, raw_path, query_string, root_path,
//	client_host, client_port, server_host, server_port, has_body,
//	then lower-cased header name, value pairs.
func (req *asgiRequest) layout() {
	r := req.r
	c := &req.strs
	c.reset()
	scheme := "http"
	if r.TLS {
		scheme = "https"
	}
	serverHost, serverPort := r.serverAddr(scheme)
	if req.ws != nil {
		scheme = map[string]string{"http": "ws", "https": "wss"}[scheme]
	}
	clientHost, clientPort := r.remoteAddr()
	hasBody := "1"
	if r.Body == nil || r.ContentLength == 0 {
		hasBody = "0"
	}
	c.add(httpVersion(r))
	c.add(r.Method)
	c.add(scheme)
	c.add(r.ScriptName + r.Path) // ASGI: path includes root_path
	c.add(r.RawPath)
	c.add(r.RawQuery)
	c.add(r.ScriptName)
	c.add(clientHost)
	c.add(clientPort)
	c.add(serverHost)
	c.add(serverPort)
	c.add(hasBody)
	c.add("host")
	c.add(r.Host)
	c.addHeaders(r.Header, true)
}

func httpVersion(r *Request) string {
	switch r.ProtoMajor {
	case 3:
		return "3"
	case 2:
		return "2"
	}
	return "1." + strconv.Itoa(r.ProtoMinor)
}

// do carries out one command; done means Serve returns err.
func (req *asgiRequest) do(c *asgiCmd) (done bool, err error) {
	if req.refusal != "" && c.kind != cmdReceive && c.kind != cmdFinish && c.kind < cmdWSAccept {
		return req.refusedCmd(c)
	}
	switch c.kind {
	case cmdStart:
		req.status = c.status
		if bad := req.checkPairs(c.headers, true); bad != "" {
			req.refuse(bad)
			break
		}
		h := req.w.Header()
		for _, kv := range c.headers {
			h.Add(kv[0], kv[1])
		}
	case cmdEarlyHint:
		if bad := req.checkPairs(c.headers, false); bad != "" {
			req.refuse("early hint: " + bad)
			break
		}
		h := req.w.Header()
		for _, kv := range c.headers {
			h.Add(kv[0], kv[1])
		}
		req.w.WriteHeader(http.StatusEarlyHints)
		for _, kv := range c.headers {
			h.Del(kv[0])
		}
	case cmdBody:
		req.writeHeader()
		ok := true
		if len(c.data) > 0 {
			_, werr := req.w.Write(c.data)
			ok = werr == nil
		}
		if ok && c.more {
			ok = req.w.Flush() == nil
		}
		if c.notify {
			req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: ok})
		} else if !ok && !req.goneReported {
			// Nobody awaits this send: the app hears of the client leaving
			// as a disconnect instead.
			req.goneReported = true
			req.app.post(asgiEvent{kind: evDisconnect, handle: req.handle})
		}
		return req.endsResponse(c, !c.more && !req.trailers)
	case cmdPathsend:
		ok, abort, err := req.sendFile(c.path)
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: ok})
		if abort {
			return true, ErrAbort
		}
		if err != nil {
			return true, err
		}
		return req.endsResponse(c, !req.trailers)
	case cmdTrailers:
		if bad := req.checkPairs(c.headers, true); bad != "" {
			// The headers and body went out: only an abort tells the
			// client the response is not whole.
			req.app.logger.Error("python: ASGI app sent an invalid trailer; aborting the response",
				zap.String("method", req.r.Method), zap.String("uri", req.r.Target), zap.String("error", bad))
			req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: false})
			return true, ErrAbort
		}
		h := req.w.Header()
		for _, kv := range c.headers {
			h.Add(http.TrailerPrefix+kv[0], kv[1])
		}
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: true})
		return req.endsResponse(c, !c.more)
	case cmdReceive:
		if req.preloaded {
			// Python had the whole body with the request and asks for no
			// more; should it, the body is over. No reader: reading a body
			// that hit EOF, and then a read deadline to stop that reader,
			// would fail the connection's background read.
			req.app.post(asgiEvent{kind: evBody, handle: req.handle})
			break
		}
		req.startBodyReader()
		nudge(req.wantBody) // Python asks once per chunk; never block here
	case cmdFinish:
		if req.ws != nil {
			return true, req.finishWebSocket(c.code)
		}
		return true, req.finish(c.code)
	default:
		req.doWebSocket(c)
	}
	return false, nil
}

// addRawHeaders adds the n header pairs laid out in buf from q (an int32
// length, then the bytes, for each name and value) to h, and returns where
// they end. Straight from the outbox: no pair slice, and the usual names
// need no canonicalising copy. All pairs are checked first (badHeader,
// then the size so far in *size): if one is refused, none is added and bad
// says why.
func addRawHeaders(h http.Header, buf []byte, q, n int, size *int) (end int, bad string) {
	p := q
	total := *size
	for i := 0; i < n; i++ {
		l := int(*(*int32)(unsafe.Pointer(&buf[p])))
		name := buf[p+4 : p+4+l]
		p += 4 + l
		l = int(*(*int32)(unsafe.Pointer(&buf[p])))
		value := buf[p+4 : p+4+l]
		p += 4 + l
		total += len(name) + len(value)
		if bad == "" {
			bad = badHeader(name, value)
		}
	}
	*size = total
	if bad == "" && total > maxResponseHeaderBytes {
		bad = headerBytesError(total)
	}
	if bad != "" {
		return p, bad
	}
	for i := 0; i < n; i++ {
		l := int(*(*int32)(unsafe.Pointer(&buf[q])))
		name := buf[q+4 : q+4+l]
		q += 4 + l
		l = int(*(*int32)(unsafe.Pointer(&buf[q])))
		value := string(buf[q+4 : q+4+l])
		q += 4 + l
		key, ok := commonHeaderKeys[string(name)] // no allocation for the lookup
		if !ok {
			key = http.CanonicalHeaderKey(string(name))
		}
		h[key] = append(h[key], value)
	}
	return q, ""
}

// checkPairs checks header pairs as addRawHeaders does; count adds their
// size to the response's (early hints are a response of their own).
func (req *asgiRequest) checkPairs(pairs [][2]string, count bool) string {
	total := 0
	for _, kv := range pairs {
		if bad := badHeader(kv[0], kv[1]); bad != "" {
			return bad
		}
		total += len(kv[0]) + len(kv[1])
	}
	if count {
		req.headerBytes += total
		total = req.headerBytes
	}
	if total > maxResponseHeaderBytes {
		return headerBytesError(total)
	}
	return ""
}

// refuse answers the response 500 instead of what the app sends (its
// headers are still held), logging why once. The app's sends from now on
// fail as if the client had left (refusedCmd); the 500 goes out when the
// app ends its response or its task.
func (req *asgiRequest) refuse(why string) {
	if req.refusal != "" {
		return
	}
	req.refusal = why
	req.app.logger.Error("python: ASGI app sent an invalid response; answering 500",
		zap.String("method", req.r.Method), zap.String("uri", req.r.Target), zap.String("error", why))
}

// refusalError is the 500 of a refused response. The app's headers held so
// far are dropped: the 500 must not carry the length or type of what it
// replaces (Caddy's Server and Alt-Svc stay).
func (req *asgiRequest) refusalError() error {
	req.dropHeldHeaders()
	return statusError(http.StatusInternalServerError, fmt.Errorf("python app %s: %s", req.app.target, req.refusal))
}

// refusedCmd takes a command sent after the response was refused: a send
// that awaits its completion fails, and the final one ends the request
// with the 500.
func (req *asgiRequest) refusedCmd(c *asgiCmd) (done bool, err error) {
	final := false
	switch c.kind {
	case cmdBody:
		final = !c.more
		if c.notify {
			req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: false})
		}
	case cmdPathsend:
		final = true
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: false})
	case cmdTrailers:
		final = !c.more
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: false})
	}
	if final && c.boxed {
		req.stopBodyReader()
		return true, req.refusalError()
	}
	return false, nil
}

// commonHeaderKeys maps the lower-case names ASGI apps send (the spec
// wants them lower-cased) to Go's canonical form, for the most common
// response headers.
var commonHeaderKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Content-Disposition",
		"Cache-Control", "Set-Cookie", "Location", "Etag", "Last-Modified", "Expires", "Vary", "Date", "Server",
		"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Expose-Headers", "X-Content-Type-Options",
		"X-Frame-Options", "Strict-Transport-Security", "Link", "Transfer-Encoding", "Connection"} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// endsResponse: a final message (last the body, pathsend or trailers) from
// the outbox ends the request here, as asgi_finish would, which Python
// then leaves out: the response is whole whatever the app does afterwards,
// and the request no longer waits for the loop's next pass. (A failed
// write is a client that left: nothing more to answer either.)
func (req *asgiRequest) endsResponse(c *asgiCmd, final bool) (done bool, err error) {
	if !c.boxed || !final {
		return false, nil
	}
	if req.readerStarted {
		// A receive() may still wait for a chunk the reader, stopped now,
		// will never post: it gets http.disconnect instead (the response is
		// complete). Harmless if the chunk came.
		req.stopBodyReader()
		req.app.post(asgiEvent{kind: evDisconnect, handle: req.handle})
	}
	return true, nil
}

// writeHeader sends the status and headers once, before the first body.
func (req *asgiRequest) writeHeader() {
	if req.headerWritten {
		return
	}
	req.headerWritten = true
	status := req.status
	if req.refusal != "" {
		// A path that writes past a refusal (a WebSocket denial): still
		// the 500, without the app's headers.
		_ = req.refusalError()
		status = http.StatusInternalServerError
	} else if status < 200 || status > 999 {
		req.app.logger.Error("ASGI app sent an invalid status; answering 500", zap.Int("status", status))
		status = http.StatusInternalServerError
	}
	req.w.WriteHeader(status)
}

// sendFile serves http.response.pathsend: the kernel copies the file
// (sendfile) where the connection allows it. ok is false when the file was
// not sent whole; abort, that the response must be aborted (the headers
// went out, and the file failed); err, when not nil, is the answer instead
// (500: the file cannot be served and the headers are still held).
func (req *asgiRequest) sendFile(path string) (ok, abort bool, err error) {
	f, size, ferr := openRegular(path)
	if ferr != nil {
		req.app.logger.Error("http.response.pathsend: cannot send the file",
			zap.String("method", req.r.Method), zap.String("uri", req.r.Target),
			zap.String("path", path), zap.Error(ferr))
		if req.headerWritten {
			return false, true, nil
		}
		req.refuse(fmt.Sprintf("http.response.pathsend: %v", ferr))
		req.stopBodyReader()
		return false, false, req.refusalError()
	}
	defer f.Close()
	if !req.headerWritten && req.w.Header().Get("Content-Length") == "" {
		req.w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	req.writeHeader()
	n, werr := req.w.SendFile(f, size)
	if werr != nil && ClientGone(werr) {
		return false, false, nil
	}
	if werr != nil || n < size {
		// The file failed (or shrank) under us: what went out is short.
		req.app.logger.Error("http.response.pathsend: reading the file failed mid-response; aborting it",
			zap.String("path", path), zap.Int64("sent", n), zap.Int64("size", size), zap.Error(werr))
		return false, true, nil
	}
	return true, false, nil
}

func (req *asgiRequest) finish(code int) error {
	req.stopBodyReader()
	switch {
	case req.refusal != "" && !req.headerWritten:
		return req.refusalError()
	case code == asgiStopped:
		return req.cutShort(http.StatusServiceUnavailable, ErrStopped)
	case code == asgiTimedOut:
		return req.cutShort(http.StatusGatewayTimeout, fmt.Errorf("python app %s: request_timeout (%v) passed (the log above says where it waited)",
			req.app.target, req.app.opts.RequestTimeout))
	case code == asgiComplete || (code == asgiClientGone && req.headerWritten):
		return nil
	case req.headerWritten:
		// ASGI: an app that fails mid-response gets its connection closed,
		// so the client cannot take the short response for a whole one.
		return ErrAbort
	case req.bodyErr != nil:
		return bodyError(req.bodyErr) // release's endBody closes the connection
	case code == asgiClientGone:
		return nil
	default:
		return statusError(http.StatusInternalServerError,
			fmt.Errorf("python app %s failed before starting its response (see the log above)", req.app.target))
	}
}

// The body reader reads one chunk per asgi_receive, on its own goroutine
// so that the request goroutine keeps writing meanwhile (an app may stream
// its response while it reads the request).
func (req *asgiRequest) startBodyReader() {
	if req.readerStarted {
		return
	}
	req.readerStarted = true
	req.wantBody = make(chan struct{}, 1)
	req.stopReader = make(chan struct{})
	req.readerDone = make(chan struct{})
	go req.readBody()
}

func (req *asgiRequest) readBody() {
	// release clears req once readerDone is closed: what the last post
	// needs is read before that.
	app := req.app
	var body io.Reader = req.r.Body
	if body == nil {
		body = eofReader{}
	}
	if t := app.opts.BodyTimeout; t > 0 {
		body = &bodyReader{body: body, w: req.w, timeout: t, cut: &req.cut}
	}
	for {
		select {
		case <-req.wantBody:
		case <-req.stopReader:
			close(req.readerDone)
			return
		}
		n, err := 0, error(nil)
		for n == 0 && err == nil {
			n, err = body.Read(req.body)
		}
		ev := asgiEvent{kind: evBody, handle: req.handle, data: req.body[:n], flag: err == nil}
		if err != nil && err != io.EOF {
			// Malformed or cut-short body: the app sees a disconnect, and
			// finish answers 400 if no response has started.
			req.bodyErr = err
			ev = asgiEvent{kind: evDisconnect, handle: req.handle}
		}
		req.bodyEOF = err == io.EOF
		if err != nil {
			// Done before the last event goes out: the app may answer and
			// finish at once, and stopBodyReader must then see a finished
			// reader, not cut a read short with a deadline on a connection
			// that is still in use.
			close(req.readerDone)
			app.post(ev)
			return
		}
		// req.body is reused only after the next asgi_receive, which the
		// loop makes after it copied this chunk.
		app.post(ev)
	}
}

// stopBodyReader ends the reader before Serve returns: the body must
// not be read after that. A read blocked on a slow client is cut short with
// a read deadline.
func (req *asgiRequest) stopBodyReader() {
	if !req.readerStarted {
		return
	}
	req.readerStarted = false
	close(req.stopReader)
	select {
	case <-req.readerDone:
		return
	default:
	}
	// The body reader arms no deadline over this one (bodyReader.cut).
	req.cut.Store(true)
	_ = req.w.SetReadDeadline(time.Now())
	<-req.readerDone
}

// queue hands a command to the request goroutine; it never blocks the loop.
func (req *asgiRequest) queue(c asgiCmd) {
	req.mu.Lock()
	req.cmds = append(req.cmds, c)
	req.mu.Unlock()
	req.wake()
}

// wake tells the request goroutine that commands wait for it.
func (req *asgiRequest) wake() { nudge(req.signal) }

// runBox carries out the commands the loop appended to the outbox since
// the last call (asgi_queues.h lays them out); done means Serve returns
// err.
func (req *asgiRequest) runBox() (done bool, err error) {
	var p *C.char
	var n C.size_t
	C.caddysnake_areq_take(req.app.queues, req.box, &p, &n)
	if n == 0 {
		return false, nil
	}
	buf := unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
	copied := 0 // body bytes from the outbox written: AOUTBOX_LIMIT counts them
	defer func() {
		if copied > 0 && !done {
			C.caddysnake_areq_sent(req.app.queues, req.box, C.size_t(copied))
		}
	}()
	for off := 0; off < len(buf); {
		hdr := (*C.cs_acmd)(unsafe.Pointer(&buf[off]))
		q := off + int(unsafe.Sizeof(*hdr))
		c := asgiCmd{kind: int(hdr.kind), notify: hdr.notify != 0, boxed: true}
		if nh := int(hdr.nhdrs); nh > 0 && c.kind == cmdStart && req.refusal == "" {
			var bad string
			if q, bad = addRawHeaders(req.w.Header(), buf, q, nh, &req.headerBytes); bad != "" {
				req.refuse(bad)
			}
		} else if nh > 0 {
			c.headers = make([][2]string, nh)
			for i := range c.headers {
				for j := 0; j < 2; j++ {
					l := int(*(*int32)(unsafe.Pointer(&buf[q])))
					c.headers[i][j] = string(buf[q+4 : q+4+l])
					q += 4 + l
				}
			}
		}
		var data []byte
		if hdr.ext != nil {
			data = unsafe.Slice((*byte)(unsafe.Pointer(hdr.ext)), int(hdr.len))
		} else {
			data = buf[q : q+int(hdr.len)]
			q += int(hdr.len)
		}
		off = (q + 7) &^ 7
		switch c.kind {
		case cmdStart:
			c.status = int(hdr.arg)
			req.trailers = hdr.arg2 != 0
		case cmdBody:
			c.data, c.more = data, hdr.arg != 0
			if hdr.ext == nil {
				copied += len(data)
			}
		case cmdPathsend:
			c.path = string(data)
		case cmdTrailers:
			c.more = hdr.arg != 0
		case cmdFinish:
			c.code = int(hdr.arg)
		}
		if done, err = req.do(&c); done {
			return done, err
		}
	}
	return false, nil
}

func copyHeaders(hdrs *C.cs_str, n C.size_t) [][2]string {
	pairs := unsafe.Slice(hdrs, 2*int(n))
	out := make([][2]string, n)
	for i := range out {
		out[i] = [2]string{C.GoStringN(pairs[2*i].data, C.int(pairs[2*i].len)), C.GoStringN(pairs[2*i+1].data, C.int(pairs[2*i+1].len))}
	}
	return out
}

// The go_asgi_* callbacks run on the loop thread with the GIL held: they
// only queue. They return -1 when the request is over.

//export go_asgi_start
func go_asgi_start(h C.uintptr_t, status C.int, hdrs *C.cs_str, n C.size_t, trailers C.int) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdStart, status: int(status), headers: copyHeaders(hdrs, n)})
}

//export go_asgi_early_hint
func go_asgi_early_hint(h C.uintptr_t, hdrs *C.cs_str, n C.size_t) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdEarlyHint, headers: copyHeaders(hdrs, n)})
}

//export go_asgi_trailers
func go_asgi_trailers(h C.uintptr_t, hdrs *C.cs_str, n C.size_t, more C.int) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdTrailers, headers: copyHeaders(hdrs, n), more: more != 0})
}

//export go_asgi_body
func go_asgi_body(h C.uintptr_t, data *C.char, n C.size_t, more C.int) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdBody, data: unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n)), more: more != 0,
		notify: true})
}

//export go_asgi_pathsend
func go_asgi_pathsend(h C.uintptr_t, path *C.char, n C.size_t) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdPathsend, path: C.GoStringN(path, C.int(n))})
}

//export go_asgi_receive
func go_asgi_receive(h C.uintptr_t) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdReceive})
}

//export go_asgi_finish
func go_asgi_finish(h C.uintptr_t, code C.int) C.int64_t {
	return queueCmd(h, asgiCmd{kind: cmdFinish, code: int(code)})
}

func queueCmd(h C.uintptr_t, c asgiCmd) C.int64_t {
	req := asgiRequests.get(uintptr(h))
	if req == nil {
		return -1
	}
	req.queue(c)
	return 0
}
