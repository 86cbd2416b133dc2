package nethttp

import (
	"net/http"
	"reflect"
)

// What happens to an HTTP/1 connection after a request whose body was not
// read to its end (the engine's endBody asks for it).
//
// Go's server, left to itself, reads what is left of a body before it
// writes the response, and closes the connection instead if that read
// fails (a corrupt chunk, a cut-short body, a timeout): what follows a
// broken body must not be parsed as the next request. Full duplex skips
// that step, so the bridge has the connection closed after the response
// when the body did not reach its end. That also covers a body the app
// never read, which net/http would otherwise drain after the handler, in
// a way that starts a read of the next request racing the server's own
// ("invalid concurrent Body.Read call").

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
