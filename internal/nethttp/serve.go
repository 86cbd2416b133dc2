// Package nethttp drives the engine from net/http: it checks a request,
// lays it out as an engine.Request, and answers through an
// engine.ResponseWriter over net/http's ResponseWriter (deadlines, full
// duplex, sendfile, and WebSockets with coder/websocket, HTTP/2's RFC 8441
// included). It knows nothing of Caddy either: the Caddy module hands it
// what Caddy knows of the request as Via.
package nethttp

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
)

// Via is what the server in front knows of a request beyond the request
// itself.
type Via struct {
	// OriginalURL is the request's URL before the server stripped a mount
	// prefix from its path (Caddy's handle_path, uri strip_prefix); nil:
	// nothing was stripped.
	OriginalURL *url.URL
	// ClientIP is the client's address as the server resolved it (behind
	// trusted proxies, the forwarded one); "": the direct peer.
	ClientIP string
	// Stats, if set, counts the request and lists it while in flight
	// (stats.go).
	Stats *engine.Stats
}

// exchange is one request in flight: the engine's view of it and the
// writer it answers through, pooled so a request allocates neither.
type exchange struct {
	req engine.Request
	rw  responseWriter
}

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

// Serve checks r (CheckRequest) and has app serve it. The engine's
// ErrAbort becomes net/http's abort (panic(http.ErrAbortHandler)); other
// errors, *engine.Error with a status among them, are returned for the
// server to answer.
func Serve(app engine.App, w http.ResponseWriter, r *http.Request, via Via, asgi bool, logger *zap.Logger) error {
	if err := CheckRequest(r, asgi, logger); err != nil {
		if via.Stats != nil {
			via.Stats.InFlight.Add(1) // End takes it back
			countEnd(via.Stats, nil, 0, err)
		}
		return err
	}
	x := exchanges.Get().(*exchange)
	x.layout(r, via)
	x.rw = responseWriter{w: w, r: r, ctl: *http.NewResponseController(w), stats: via.Stats}
	var track *engine.Inflight
	if via.Stats != nil {
		track = via.Stats.Begin(r.Method, r.URL.Path)
		if asgi {
			track.Start() // no queue: its task starts at once
		}
		x.req.Track = track
	}
	err := app.Serve(&x.req, &x.rw)
	if via.Stats != nil {
		if x.rw.wsOpen {
			via.Stats.WebSockets.Add(-1)
		}
		countEnd(via.Stats, track, x.rw.status, err)
	}
	*x = exchange{}
	exchanges.Put(x)
	if err == engine.ErrAbort {
		panic(http.ErrAbortHandler)
	}
	return err
}

// layout fills x.req from r.
func (x *exchange) layout(r *http.Request, via Via) {
	q := &x.req
	q.Method = r.Method
	q.Target = r.RequestURI
	q.ScriptName, q.Path = splitScriptName(r.URL.Path, via.OriginalURL)
	if q.ScriptName != "" {
		q.RawPath = via.OriginalURL.EscapedPath()
	} else {
		q.RawPath = r.URL.EscapedPath()
	}
	q.RawQuery = r.URL.RawQuery
	q.Proto, q.ProtoMajor, q.ProtoMinor = r.Proto, r.ProtoMajor, r.ProtoMinor
	q.Host = r.Host
	q.Header = r.Header
	q.ContentLength = r.ContentLength
	q.RemoteAddr, q.ClientIP = r.RemoteAddr, via.ClientIP
	q.LocalAddr = nil
	if !hostHasPort(r.Host) {
		// Only needed for the server port when Host has none: the
		// context lookup is left out otherwise.
		q.LocalAddr, _ = r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	}
	q.TLS = r.TLS != nil
	q.Body = r.Body
	if q.Body == http.NoBody {
		q.Body = nil
	}
	q.Done = r.Context().Done()
}

// hostHasPort says whether net.SplitHostPort(h) succeeds, without the
// allocation of its error (when unsure, false: the caller then looks the
// listener's address up, which is only a little slower).
func hostHasPort(h string) bool {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.ContainsAny(h[i+1:], "[]") {
		return false
	}
	if h[0] == '[' {
		return i > 1 && h[i-1] == ']' && !strings.ContainsAny(h[1:i-1], "[]")
	}
	return !strings.ContainsAny(h[:i], ":[]")
}

// splitScriptName derives SCRIPT_NAME from a prefix the server stripped
// before us: the original path ends with the current one, and what comes
// before it is where the app is mounted.
func splitScriptName(path string, orig *url.URL) (scriptName, pathInfo string) {
	pathInfo = path
	if orig != nil {
		op := orig.Path
		if len(op) > len(pathInfo) && strings.HasSuffix(op, pathInfo) {
			scriptName = strings.TrimSuffix(op[:len(op)-len(pathInfo)], "/")
			if pathInfo == "" || pathInfo[0] != '/' {
				pathInfo = "/" + pathInfo
			}
		}
	}
	return scriptName, pathInfo
}

// responseWriter is engine.ResponseWriter over net/http's. Its
// ResponseController is made once per request (a streamed response flushes
// every chunk) and holds no state, so the deadline methods may be called
// from other goroutines.
type responseWriter struct {
	w   http.ResponseWriter
	r   *http.Request
	ctl http.ResponseController
	// For Stats: the status sent (0: none yet), whether a WebSocket is
	// open (counted until Serve returns).
	stats  *engine.Stats
	status int
	wsOpen bool
}

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

func (rw *responseWriter) WriteHeader(status int) {
	if rw.status == 0 && (status >= 200 || status == http.StatusSwitchingProtocols) {
		rw.status = status // not an interim 1xx (103 Early Hints)
	}
	rw.w.WriteHeader(status)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	return rw.w.Write(p)
}
func (rw *responseWriter) Flush() error { return rw.ctl.Flush() }

func (rw *responseWriter) SetReadDeadline(t time.Time) error  { return rw.ctl.SetReadDeadline(t) }
func (rw *responseWriter) SetWriteDeadline(t time.Time) error { return rw.ctl.SetWriteDeadline(t) }
func (rw *responseWriter) EnableFullDuplex() error            { return rw.ctl.EnableFullDuplex() }
func (rw *responseWriter) CloseAfterResponse() bool           { return closeAfterResponse(rw.w) }

// SendFile: an *os.File under a LimitedReader, so net/http's ReadFrom
// still uses sendfile.
func (rw *responseWriter) SendFile(f *os.File, n int64) (int64, error) {
	return io.Copy(rw.w, io.LimitReader(f, n))
}

// countEnd counts a request's outcome in s: the status sent, or the one
// the server answers err with (500 for an error without one); 503 for
// max_wait (in a worker process too: its error comes back as text),
// 504 request_timeout and 408 request_body_timeout are counted apart.
func countEnd(s *engine.Stats, t *engine.Inflight, sent int, err error) {
	status := sent
	var e *engine.Error
	switch {
	case sent != 0 || err == nil || err == engine.ErrAbort:
	case errors.As(err, &e):
		status = e.Status
		switch {
		case status == http.StatusServiceUnavailable &&
			(errors.Is(err, engine.ErrBusy) || err.Error() == engine.ErrBusy.Error()):
			s.Busy.Add(1)
		case status == http.StatusGatewayTimeout:
			s.Timeouts.Add(1)
		case status == http.StatusRequestTimeout:
			s.BodyTimeouts.Add(1)
		}
	default:
		status = http.StatusInternalServerError
	}
	s.End(t, status)
}
