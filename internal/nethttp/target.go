package nethttp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
)

// Request checks made once, before a request reaches Python, for WSGI and
// ASGI alike and whatever the HTTP version: what Go's parser lets through
// but RFC 9112 / 9110 forbid, answered as gunicorn answers it. (Go itself
// answers 400 for control bytes in the target or in field values, bad
// header names and conflicting Content-Lengths; those never reach a
// handler.)

// CheckRequest returns a 400 naming what is wrong with r, or nil. It drops
// a fragment from the target (clients must not send one, RFC 9112 3.2;
// gunicorn ignores it) and makes a body whose trailers carry forbidden
// fields fail to read (see trailerGuard).
func CheckRequest(r *http.Request, asgi bool, logger *zap.Logger) error {
	if err := checkTarget(r); err != nil {
		logger.Warn("bad request target; answered 400", zap.String("method", r.Method),
			zap.String("target", r.RequestURI), zap.Error(err))
		return &engine.Error{Status: http.StatusBadRequest, Err: err}
	}
	if err := checkFields(r.Header); err != nil {
		logger.Warn("bad request header; answered 400", zap.String("method", r.Method),
			zap.String("uri", r.RequestURI), zap.Error(err))
		return &engine.Error{Status: http.StatusBadRequest, Err: err}
	}
	dropFragment(r)
	if asgi {
		asUpgradeRequest(r) // ws_h2.go: RFC 8441 extended CONNECT
	}
	if r.ProtoMajor == 1 && r.ContentLength < 0 && r.Body != nil {
		// Only a chunked body has trailers (Caddy wraps every body, so a
		// GET's is not NoBody: no wrapper, no allocation for it). HTTP/2
		// and 3 refuse such trailers themselves (httpguts).
		r.Body = &trailerGuard{ReadCloser: r.Body, r: r, logger: logger}
	}
	return nil
}

func checkTarget(r *http.Request) error {
	t := r.RequestURI
	for i := 0; i < len(t); i++ {
		if t[i] >= 0x80 {
			// RFC 3986: a URI is ASCII; anything else must be percent-encoded.
			return fmt.Errorf("request target has a non-ASCII byte (0x%02x at %d); percent-encode it", t[i], i)
		}
	}
	switch {
	case r.Method == http.MethodConnect:
		return nil // authority-form (HTTP/1) or extended CONNECT (HTTP/2)
	case t == "*":
		if r.Method != http.MethodOptions {
			return fmt.Errorf("asterisk-form target %q is only for OPTIONS (RFC 9112 3.2.4), not %s", t, r.Method)
		}
		return nil
	case strings.HasPrefix(t, "/"):
		return nil // origin-form
	}
	if u, err := url.Parse(t); err == nil && u.Scheme != "" && u.Host != "" {
		return nil // absolute-form (RFC 9112 3.2.2)
	}
	return fmt.Errorf("request target %q is neither a path nor an absolute URI; authority-form is only for CONNECT (RFC 9112 3.2.3)", t)
}

// checkFields refuses a second Content-Type: a singleton field (RFC 9110
// 8.3) that apps read either way, one taking the first, another the last.
// (Go's parser already refuses control characters in field values.)
func checkFields(h http.Header) error {
	if n := len(h["Content-Type"]); n > 1 {
		return fmt.Errorf("%d Content-Type headers; it is a single-value field", n)
	}
	return nil
}

// dropFragment cuts "#..." off the query, or off the path when there is no
// query, as gunicorn does: "/?page=1#posts" gives QUERY_STRING "page=1".
func dropFragment(r *http.Request) {
	i := strings.IndexByte(r.RequestURI, '#')
	if i < 0 {
		return
	}
	frag := r.RequestURI[i:]
	r.RequestURI = r.RequestURI[:i]
	u := r.URL
	switch {
	case strings.HasSuffix(u.RawQuery, frag):
		u.RawQuery = strings.TrimSuffix(u.RawQuery, frag)
	case u.RawPath != "" && strings.HasSuffix(u.RawPath, frag):
		u.RawPath = strings.TrimSuffix(u.RawPath, frag)
		if p, err := url.PathUnescape(u.RawPath); err == nil {
			u.Path = p
		}
	default:
		if dec, err := url.PathUnescape(frag); err == nil && strings.HasSuffix(u.Path, dec) {
			u.Path = strings.TrimSuffix(u.Path, dec)
		}
	}
	if u.RawPath != "" && u.EscapedPath() != u.RawPath {
		u.RawPath = "" // no longer a valid encoding of Path
	}
}

// errForbiddenTrailer fails a body read: its trailers carry fields that
// must not be sent in a trailer section (RFC 9110 6.5.1: framing, routing,
// authentication, ...), such as Content-Length, Host or Transfer-Encoding.
var errForbiddenTrailer = errors.New("request trailers carry fields not allowed in a trailer")

// trailerGuard: Go's HTTP/1 server puts whatever trailer fields a chunked
// body ends with into r.Trailer, unchecked; the body's end is where the
// handler first sees them, so that is where they are refused (400 when
// nothing was answered yet, the same as for a malformed chunked body).
type trailerGuard struct {
	io.ReadCloser
	r      *http.Request
	logger *zap.Logger
	failed bool
}

func (g *trailerGuard) Read(p []byte) (int, error) {
	if g.failed {
		return 0, errForbiddenTrailer
	}
	n, err := g.ReadCloser.Read(p)
	if err == io.EOF {
		if bad := forbiddenTrailers(g.r.Trailer); len(bad) > 0 {
			g.failed = true
			g.logger.Warn("request trailers carry forbidden fields; body refused", zap.Strings("fields", bad),
				zap.String("method", g.r.Method), zap.String("uri", g.r.RequestURI))
			return n, fmt.Errorf("%w: %s", errForbiddenTrailer, strings.Join(bad, ", "))
		}
	}
	return n, err
}

func forbiddenTrailers(t http.Header) []string {
	var bad []string
	for k := range t {
		if !httpguts.ValidTrailerHeader(k) {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	return bad
}
