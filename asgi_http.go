package caddysnake

// #include "asgi_queues.h"
import "C"

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// asgiRequest is one HTTP request served by an ASGI app. The loop thread
// only appends commands for it: to its outbox (box, asgi_queues.c) for an
// HTTP request, through the go_asgi_* and go_ws_* callbacks below for a
// WebSocket. Its ServeHTTP goroutine carries them out in order, so all
// ResponseWriter use stays on that goroutine.
type asgiRequest struct {
	app    *ASGIApp
	handle uintptr
	w      http.ResponseWriter
	r      *http.Request
	strs   cStrings       // scope strings (copied by the post)
	body   []byte         // body chunk buffer
	ws     *asgiWebSocket // non-nil for a WebSocket upgrade (websocket.go)
	box    *C.cs_areq     // an HTTP request's outbox

	mu     sync.Mutex
	cmds   []asgiCmd
	signal chan struct{} // cap 1: box or cmds has something

	// Owned by the ServeHTTP goroutine.
	status        int
	headerWritten bool
	readerStarted bool
	wantBody      chan struct{} // cap 1
	stopReader    chan struct{}
	readerDone    chan struct{}
	bodyErr       error                    // set by the reader before it posts evDisconnect
	ctl           *http.ResponseController // made on first use, for flushes and deadlines
	preloaded     bool                     // the whole body went with the request event
	trailers      bool                     // http.response.start announced trailers
	goneReported  bool                     // a failed write was reported as evDisconnect
}

type asgiCmd struct {
	kind    int // cmd* below, cmdWS* in websocket.go
	status  int
	headers [][2]string
	data    []byte // cmdBody, cmdWSSend: C memory of the outbox, or Python's bytes kept alive by asgi.py until evSendDone
	more    bool   // more_body; more_trailers; for cmdWSSend: a text message
	notify  bool   // cmdBody: asgi.py awaits the completion event
	boxed   bool   // from the outbox: the final message ends the request (no cmdFinish follows)
	path    string // pathsend's path; the WebSocket subprotocol, or close reason
	code    int    // asgi_finish's code; the WebSocket close code
}

const (
	cmdStart = iota
	cmdBody
	cmdReceive
	cmdPathsend
	cmdEarlyHint
	cmdTrailers
	cmdFinish
)

var asgiRequestPool = sync.Pool{New: func() any {
	return &asgiRequest{body: make([]byte, asgiBodyChunk), signal: make(chan struct{}, 1)}
}}

// Serve runs one HTTP request through the app.
func (a *ASGIApp) Serve(w http.ResponseWriter, r *http.Request) error {
	if a.closing.Load() || !a.enter() {
		return caddyhttp.Error(http.StatusServiceUnavailable, ErrStopped)
	}
	defer a.leave() // after release, which closes the outbox
	req := asgiRequestPool.Get().(*asgiRequest)
	req.app, req.w, req.r = a, w, r
	kind := evRequest
	if isWebSocketUpgrade(r) {
		kind = evWSConnect
		req.ws = &asgiWebSocket{}
	}
	req.handle = asgiRequests.add(req)
	defer req.release()
	var body *C.char
	bodyLen := -1
	if req.ws == nil {
		if req.box = C.caddysnake_areq_open(a.queues, C.uintptr_t(req.handle)); req.box == nil {
			return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("python: out of memory for an ASGI request"))
		}
		// A small body is read straight into the C block its event keeps:
		// no copy between the socket and the app's bytes.
		if bodyLen = preloadLen(r); bodyLen >= 0 {
			if body = (*C.char)(C.malloc(C.size_t(max(bodyLen, 1)))); body == nil {
				return caddyhttp.Error(http.StatusServiceUnavailable, errBodyMemory)
			}
			if err := readPreload(w, r, body, bodyLen, a.opts.BodyTimeout); err != nil {
				C.free(unsafe.Pointer(body))
				return bodyError(closeOnTimeout(w, r, err))
			}
			req.preloaded = true
		}
	}
	req.layout()
	allowFullDuplex(w, r)

	// A small body goes with the request, in the same drain: the app's
	// first receive() finds it without a round trip through Go.
	a.post(asgiEvent{kind: kind, handle: req.handle, req: req, body: body, bodyLen: bodyLen})
	ctxDone := r.Context().Done()
	for {
		if req.ws != nil && req.ws.conn != nil {
			// Hijacked: the connection is the WebSocket reader's to watch.
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
			return caddyhttp.Error(http.StatusServiceUnavailable, ErrStopped)
		}
	}
}

func (req *asgiRequest) release() {
	asgiRequests.remove(req.handle)
	req.stopBodyReader()
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
	rootPath, pathInfo := splitScriptName(r)
	rawPath := r.URL.EscapedPath()
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil && rootPath != "" {
		rawPath = orig.URL.EscapedPath()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	serverHost, serverPort := serverAddr(r, scheme)
	if req.ws != nil {
		scheme = map[string]string{"http": "ws", "https": "wss"}[scheme]
	}
	clientHost, clientPort := remoteAddr(r)
	hasBody := "1"
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		hasBody = "0"
	}
	c.add(httpVersion(r))
	c.add(r.Method)
	c.add(scheme)
	c.add(rootPath + pathInfo) // ASGI: path includes root_path
	c.add(rawPath)
	c.add(r.URL.RawQuery)
	c.add(rootPath)
	c.add(clientHost)
	c.add(clientPort)
	c.add(serverHost)
	c.add(serverPort)
	c.add(hasBody)
	c.add("host")
	c.add(r.Host)
	c.addHeaders(r.Header, true)
}

func httpVersion(r *http.Request) string {
	switch r.ProtoMajor {
	case 3:
		return "3"
	case 2:
		return "2"
	}
	return "1." + strconv.Itoa(r.ProtoMinor)
}

// do carries out one command; done means ServeHTTP returns err.
func (req *asgiRequest) do(c *asgiCmd) (done bool, err error) {
	switch c.kind {
	case cmdStart:
		req.status = c.status
		h := req.w.Header()
		for _, kv := range c.headers {
			h.Add(kv[0], kv[1])
		}
	case cmdEarlyHint:
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
			ok = req.controller().Flush() == nil
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
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: req.sendFile(c.path)})
		return req.endsResponse(c, !req.trailers)
	case cmdTrailers:
		h := req.w.Header()
		for _, kv := range c.headers {
			h.Add(http.TrailerPrefix+kv[0], kv[1])
		}
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: true})
		return req.endsResponse(c, !c.more)
	case cmdReceive:
		if req.preloaded {
			// asgi.py had the whole body with the request and asks for no
			// more; should it, the body is over. No reader: reading a body
			// that hit EOF, and then a read deadline to stop that reader,
			// would fail the connection's background read.
			req.app.post(asgiEvent{kind: evBody, handle: req.handle})
			break
		}
		req.startBodyReader()
		nudge(req.wantBody) // asgi.py asks once per chunk; never block here
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
// need no canonicalising copy.
func addRawHeaders(h http.Header, buf []byte, q, n int) int {
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
	return q
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
// the outbox ends the request here, as asgi_finish would, which asgi.py
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

// controller is made once per request: a streamed response flushes every
// chunk, and one allocation per chunk is waste on that path.
func (req *asgiRequest) controller() *http.ResponseController {
	if req.ctl == nil {
		req.ctl = http.NewResponseController(req.w)
	}
	return req.ctl
}

// writeHeader sends the status and headers once, before the first body.
func (req *asgiRequest) writeHeader() {
	if req.headerWritten {
		return
	}
	req.headerWritten = true
	status := req.status
	if status < 200 || status > 999 {
		req.app.logger.Error("ASGI app sent an invalid status; answering 500", zap.Int("status", status))
		status = http.StatusInternalServerError
	}
	req.w.WriteHeader(status)
}

// sendFile serves http.response.pathsend: the kernel copies the file
// (sendfile) where the connection allows it.
func (req *asgiRequest) sendFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		req.app.logger.Error("http.response.pathsend: cannot open file", zap.String("path", path), zap.Error(err))
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && req.w.Header().Get("Content-Length") == "" && !req.headerWritten {
		req.w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	req.writeHeader()
	_, err = io.Copy(req.w, f)
	return err == nil
}

func (req *asgiRequest) finish(code int) error {
	req.stopBodyReader()
	switch {
	case code == asgiComplete || (code == asgiClientGone && req.headerWritten):
		return nil
	case req.headerWritten:
		// ASGI: an app that fails mid-response gets its connection closed,
		// so the client cannot take the short response for a whole one.
		panic(http.ErrAbortHandler)
	case req.bodyErr != nil:
		return bodyError(closeOnTimeout(req.w, req.r, req.bodyErr))
	case code == asgiClientGone:
		return nil
	default:
		return caddyhttp.Error(http.StatusInternalServerError,
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
	if t := app.opts.BodyTimeout; t > 0 {
		// Its own controller: the request goroutine uses req.ctl meanwhile.
		body = &bodyReader{body: body, ctl: http.NewResponseController(req.w), timeout: t}
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

// stopBodyReader ends the reader before ServeHTTP returns: the body must
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
	// Again until it returns: a read that starts meanwhile arms its own
	// request_body_timeout deadline over this one.
	for {
		_ = req.controller().SetReadDeadline(time.Now())
		select {
		case <-req.readerDone:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
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
// the last call (asgi_queues.h lays them out); done means ServeHTTP returns
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
		if nh := int(hdr.nhdrs); nh > 0 && c.kind == cmdStart {
			q = addRawHeaders(req.w.Header(), buf, q, nh)
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
