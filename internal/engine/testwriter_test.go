package engine

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// testWriter is the engine's ResponseWriter over a plain
// http.ResponseWriter, for tests that drive the engine without a transport
// (internal/nethttp imports this package, so its tests cannot be used
// here): no deadlines, no WebSockets.
type testWriter struct{ http.ResponseWriter }

func (w testWriter) Flush() error {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}

func (w testWriter) SendFile(f *os.File, n int64) (int64, error) {
	return io.CopyN(w.ResponseWriter, f, n)
}
func (testWriter) SetReadDeadline(time.Time) error  { return nil }
func (testWriter) SetWriteDeadline(time.Time) error { return nil }
func (testWriter) EnableFullDuplex() error          { return nil }
func (testWriter) CloseAfterResponse() bool         { return true }
func (testWriter) AcceptWebSocket(WebSocketOptions) (WebSocket, error) {
	return nil, errors.New("no WebSockets in engine tests")
}

// testRequest is r as the engine reads it (no mount prefix, no proxies).
func testRequest(r *http.Request) *Request {
	return &Request{
		Method: r.Method, Target: r.RequestURI, Path: r.URL.Path, RawPath: r.URL.EscapedPath(),
		RawQuery: r.URL.RawQuery, Proto: r.Proto, ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor,
		Host: r.Host, Header: r.Header, ContentLength: r.ContentLength, RemoteAddr: r.RemoteAddr,
		Body: r.Body, Done: r.Context().Done(),
	}
}
