package nethttp

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// WebSocket over HTTP/2 (RFC 8441): the client opens a stream with an
// extended CONNECT (:protocol websocket), the server answers 200, and the
// stream's two directions carry the WebSocket frames. Go's HTTP/2 server
// (golang.org/x/net/http2, as Caddy configures it) accepts such a request
// only when the process runs with GODEBUG=http2xconnect=1; coder/websocket
// knows only the HTTP/1.1 upgrade, so the stream is handed to it as if it
// were a hijacked connection.

// asUpgradeRequest makes an HTTP/2 extended CONNECT for a WebSocket look
// like the HTTP/1.1 upgrade the ASGI code and the app know (a GET with
// Upgrade and Connection headers); false for any other request.
func asUpgradeRequest(r *http.Request) bool {
	if r.ProtoMajor != 2 || r.Method != http.MethodConnect || r.Header.Get(":protocol") != "websocket" {
		return false
	}
	r.Header.Del(":protocol")
	r.Method = http.MethodGet
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	return true
}

// h2Accept returns what websocket.Accept needs to take an HTTP/2 stream:
// the request with the Sec-WebSocket-Key RFC 8441 leaves out (the answer
// has no Sec-WebSocket-Accept to check it against), and a ResponseWriter
// whose 101 becomes a 200 and whose Hijack returns the stream.
func h2Accept(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request) {
	r2 := r.Clone(r.Context())
	key := make([]byte, 16)
	rand.Read(key)
	r2.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	return &h2WSWriter{w: w, r: r, header: w.Header()}, r2
}

type h2WSWriter struct {
	w        http.ResponseWriter
	r        *http.Request
	header   http.Header // w's own: the app's accept headers are already in it
	switched bool        // WriteHeader(101) was called; Hijack answers 200
}

func (h *h2WSWriter) Header() http.Header { return h.header }

func (h *h2WSWriter) Write(p []byte) (int, error) { return h.w.Write(p) }

func (h *h2WSWriter) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		h.switched = true
		return
	}
	h.w.WriteHeader(code) // Accept refusing the request
}

func (h *h2WSWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !h.switched {
		return nil, nil, errors.New("websocket over HTTP/2: hijack before the handshake")
	}
	for _, k := range []string{"Upgrade", "Connection", "Sec-Websocket-Accept"} {
		h.header.Del(k) // HTTP/1.1 upgrade headers, wrong on HTTP/2 (RFC 8441 5)
	}
	h.w.WriteHeader(http.StatusOK)
	ctl := http.NewResponseController(h.w)
	if err := ctl.Flush(); err != nil {
		return nil, nil, err
	}
	c := &h2StreamConn{body: h.r.Body, w: h.w, ctl: ctl, remote: h.r.RemoteAddr}
	if a, ok := h.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		c.local = a
	}
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

// h2StreamConn is an HTTP/2 stream as a net.Conn: reads from the request
// body, writes to the response, each write flushed (coder/websocket
// buffers a frame and flushes it whole).
type h2StreamConn struct {
	body   io.ReadCloser
	w      io.Writer
	ctl    *http.ResponseController
	local  net.Addr
	remote string

	mu     sync.Mutex // one writer at a time, and none after Close
	closed bool
}

func (c *h2StreamConn) Read(p []byte) (int, error) { return c.body.Read(p) }

func (c *h2StreamConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	n, err := c.w.Write(p)
	if err == nil {
		err = c.ctl.Flush()
	}
	return n, err
}

// Close ends both directions: a blocked Read returns, and a Write waiting
// for flow-control window is cut short. The stream itself ends when the
// handler returns.
func (c *h2StreamConn) Close() error {
	c.ctl.SetWriteDeadline(time.Now())
	err := c.body.Close()
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return err
}

func (c *h2StreamConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return &net.TCPAddr{}
}

func (c *h2StreamConn) RemoteAddr() net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", c.remote); err == nil {
		return a
	}
	return &net.TCPAddr{}
}

func (c *h2StreamConn) SetDeadline(t time.Time) error {
	c.ctl.SetReadDeadline(t)
	return c.ctl.SetWriteDeadline(t)
}
func (c *h2StreamConn) SetReadDeadline(t time.Time) error  { return c.ctl.SetReadDeadline(t) }
func (c *h2StreamConn) SetWriteDeadline(t time.Time) error { return c.ctl.SetWriteDeadline(t) }
