package caddysnake

import (
	"net/http"
	"reflect"
)

// What happens to an HTTP/1 connection after a request whose body was not
// read to its end.
//
// Go's server, left to itself, reads what is left of a body before it
// writes the response, and closes the connection instead if that read
// fails (a corrupt chunk, a cut-short body, a timeout): what follows a
// broken body must not be parsed as the next request. Full duplex
// (allowFullDuplex) skips that step, so the bridge does the same itself:
// when the handler returns and the body did not reach its end, the
// connection closes after the response. That also covers a body the app
// never read, which net/http would otherwise drain after the handler, in
// a way that starts a read of the next request racing the server's own
// ("invalid concurrent Body.Read call").

// allowFullDuplex lets an app read the request body while it writes its
// response. By default Go's HTTP/1 server first consumes whatever body is
// left when the response starts, so an app echoing an upload line by line
// (or an ASGI app streaming while it receives) would stall until the client
// finished sending. HTTP/2 and 3 are full duplex already. It says whether
// the request is HTTP/1 with a body: endBody then has to run. (Caddy wraps
// even an empty body, so Body is never NoBody; ContentLength is 0 only
// without a body, -1 for a chunked one.)
func allowFullDuplex(w http.ResponseWriter, r *http.Request) bool {
	if r.ProtoMajor == 1 && r.Body != nil && r.ContentLength != 0 {
		_ = http.NewResponseController(w).EnableFullDuplex()
		return true
	}
	return false
}

// endBody runs as an HTTP/1 request with a body is done in the bridge
// (eof: the body was read to its end). It returns false when the response
// must be aborted instead: its headers went out and the connection could
// not be marked for closing.
func endBody(w http.ResponseWriter, r *http.Request, eof, headersSent bool) bool {
	if eof || r.ProtoMajor != 1 {
		return true
	}
	return closeAfterResponse(w) || !headersSent
}

// closeAfterResponse has net/http close the connection once the response
// is written, whether its headers went out already or not: the one way to
// tell it so is http.MaxBytesReader over its own ResponseWriter, which on
// going over its limit "tells the ResponseWriter to close the connection"
// (and sets Connection: close if the headers are still held). It also
// makes the server half-close and linger before it closes, so a client
// that pipelined more gets the response instead of a reset. False if the
// writer is not net/http's HTTP/1 one (an unknown wrapper): then only a
// Connection: close header, if the headers are still held, does it.
func closeAfterResponse(w http.ResponseWriter) bool {
	inner := w
	for {
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		inner = u.Unwrap()
	}
	if reflect.TypeOf(inner).String() != "*http.response" {
		w.Header().Set("Connection", "close")
		return false
	}
	var b [1]byte
	_, _ = http.MaxBytesReader(inner, oneByte{}, 0).Read(b[:])
	return true
}

// oneByte is a reader that always has a byte: one more than a limit of 0.
type oneByte struct{}

func (oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = 0
	return 1, nil
}

func (oneByte) Close() error { return nil }
