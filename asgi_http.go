package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// asgiRequest is one HTTP request served by an ASGI app. The loop thread
// only queues commands on it (the go_asgi_* callbacks below); its ServeHTTP
// goroutine carries them out in order, so all ResponseWriter use stays on
// that goroutine.
type asgiRequest struct {
	app    *ASGIApp
	handle uintptr
	w      http.ResponseWriter
	r      *http.Request
	strs   cStrings       // scope strings (pinned by go_asgi_drain while C reads them)
	body   []byte         // body chunk buffer
	ws     *asgiWebSocket // non-nil for a WebSocket upgrade (websocket.go)

	mu     sync.Mutex
	cmds   []asgiCmd
	signal chan struct{} // cap 1: cmds has something

	// Owned by the ServeHTTP goroutine.
	status        int
	headerWritten bool
	readerStarted bool
	wantBody      chan struct{} // cap 1
	stopReader    chan struct{}
	readerDone    chan struct{}
	bodyErr       error                    // set by the reader before it posts evDisconnect
	ctl           *http.ResponseController // made on first use, for flushes and deadlines
}

type asgiCmd struct {
	kind    int // cmd* below, cmdWS* in websocket.go
	status  int
	headers [][2]string
	data    []byte // cmdBody, cmdWSSend: Python's bytes, kept alive by asgi.py until evSendDone
	more    bool   // more_body; more_trailers; for cmdWSSend: a text message
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
	if a.closing.Load() {
		return caddyhttp.Error(http.StatusServiceUnavailable, ErrStopped)
	}
	req := asgiRequestPool.Get().(*asgiRequest)
	req.app, req.w, req.r = a, w, r
	kind := evRequest
	if isWebSocketUpgrade(r) {
		kind = evWSConnect
		req.ws = &asgiWebSocket{}
	}
	req.layout()
	allowFullDuplex(w, r)
	req.handle = asgiRequests.add(req)
	defer req.release()

	a.post(asgiEvent{kind: kind, handle: req.handle, req: req})
	ctxDone := r.Context().Done()
	for {
		if req.ws != nil && req.ws.conn != nil {
			// Hijacked: the connection is the WebSocket reader's to watch.
			ctxDone = nil
		}
		select {
		case <-req.signal:
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
			return caddyhttp.Error(http.StatusServiceUnavailable, ErrStopped)
		}
	}
}

func (req *asgiRequest) release() {
	asgiRequests.remove(req.handle)
	req.stopBodyReader()
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
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: ok})
	case cmdPathsend:
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: req.sendFile(c.path)})
	case cmdTrailers:
		h := req.w.Header()
		for _, kv := range c.headers {
			h.Add(http.TrailerPrefix+kv[0], kv[1])
		}
		req.app.post(asgiEvent{kind: evSendDone, handle: req.handle, flag: true})
	case cmdReceive:
		req.startBodyReader()
		select {
		case req.wantBody <- struct{}{}:
		default: // asgi.py asks once per chunk; never block here
		}
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
		return bodyError(req.bodyErr)
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
	for {
		select {
		case <-req.wantBody:
		case <-req.stopReader:
			close(req.readerDone)
			return
		}
		n, err := 0, error(nil)
		for n == 0 && err == nil {
			n, err = req.r.Body.Read(req.body)
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
			req.app.post(ev)
			return
		}
		// req.body is reused only after the next asgi_receive, which the
		// loop makes after it copied this chunk.
		req.app.post(ev)
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
	_ = req.controller().SetReadDeadline(time.Now())
	<-req.readerDone
}

// queue hands a command to the request goroutine; it never blocks the loop.
func (req *asgiRequest) queue(c asgiCmd) {
	req.mu.Lock()
	req.cmds = append(req.cmds, c)
	req.mu.Unlock()
	select {
	case req.signal <- struct{}{}:
	default:
	}
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
	return queueCmd(h, asgiCmd{kind: cmdBody, data: unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n)), more: more != 0})
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
