package nethttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
)

// fakeApp records the request the engine would see and answers err.
type fakeApp struct {
	got engine.Request
	err error
}

func (a *fakeApp) Serve(r *engine.Request, w engine.ResponseWriter) error {
	a.got = *r
	return a.err
}
func (a *fakeApp) Close()   {}
func (a *fakeApp) Abandon() {}

// The layout: the mount prefix Caddy stripped becomes ScriptName, RawPath
// is the escaped path as received (prefix included), the client IP comes
// from Via, and a body-less request has no Body.
func TestServeLaysOutTheRequest(t *testing.T) {
	app := &fakeApp{}
	r := httptest.NewRequest("GET", "http://example.com:8080/a%2Fb/c?x=1", nil)
	orig, _ := url.Parse("/mnt/a%2Fb/c?x=1")
	r.URL.Path, r.URL.RawPath = "/a/b/c", "/a%2Fb/c"
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	r = r.WithContext(ctx)
	via := Via{OriginalURL: orig, ClientIP: "10.0.0.7"}
	if err := Serve(app, httptest.NewRecorder(), r, via, false, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	g := app.got
	want := engine.Request{Method: "GET", Target: "http://example.com:8080/a%2Fb/c?x=1", Path: "/a/b/c",
		RawPath: "/mnt/a%2Fb/c", RawQuery: "x=1", ScriptName: "/mnt", Host: "example.com:8080",
		ProtoMajor: 1, ProtoMinor: 1, ClientIP: "10.0.0.7", RemoteAddr: "192.0.2.1:1234"}
	if g.Method != want.Method || g.Target != want.Target || g.Path != want.Path || g.RawPath != want.RawPath ||
		g.RawQuery != want.RawQuery || g.ScriptName != want.ScriptName || g.Host != want.Host ||
		g.ProtoMajor != want.ProtoMajor || g.ProtoMinor != want.ProtoMinor || g.ClientIP != want.ClientIP ||
		g.RemoteAddr != want.RemoteAddr || g.TLS || g.Body != nil || g.Done != ctx.Done() {
		t.Errorf("got  %+v\nwant %+v", g, want)
	}

	// Nothing stripped: no script name, the request's own escaped path.
	r = httptest.NewRequest("GET", "/a%20b", nil)
	if err := Serve(app, httptest.NewRecorder(), r, Via{}, false, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if app.got.ScriptName != "" || app.got.Path != "/a b" || app.got.RawPath != "/a%20b" {
		t.Errorf("unmounted: script %q path %q raw %q", app.got.ScriptName, app.got.Path, app.got.RawPath)
	}
}

// The engine's answers: a status error is returned as is, ErrAbort becomes
// net/http's abort, and a bad request never reaches the app.
func TestServeMapsEngineErrors(t *testing.T) {
	status := &engine.Error{Status: 503, Err: errors.New("stopped")}
	app := &fakeApp{err: status}
	if err := Serve(app, httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), Via{}, false, zap.NewNop()); err != status {
		t.Errorf("got %v, want the engine's status error", err)
	}
	app.err = engine.ErrAbort
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("ErrAbort: recovered %v, want http.ErrAbortHandler", p)
			}
		}()
		_ = Serve(app, httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), Via{}, false, zap.NewNop())
	}()
	app.err, app.got = nil, engine.Request{}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header["Content-Type"] = []string{"a/b", "c/d"}
	var e *engine.Error
	if err := Serve(app, httptest.NewRecorder(), r, Via{}, false, zap.NewNop()); !errors.As(err, &e) || e.Status != 400 {
		t.Errorf("two Content-Types: got %v, want a 400", err)
	}
	if app.got.Method != "" {
		t.Error("a refused request reached the app")
	}
}

// Serve adds no allocation per request: the layout and the writer come
// from a pool, the ResponseController is a value in it.
func TestServeAllocatesNothing(t *testing.T) {
	app := &fakeApp{}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/path?q=1", nil) // origin-form: checkTarget parses an absolute URI
	r.Host = "example.com"                            // no port: the listener's is looked up
	logger := zap.NewNop()
	n := testing.AllocsPerRun(1000, func() {
		_ = Serve(app, w, r, Via{ClientIP: "10.0.0.7"}, false, logger)
	})
	if n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

func TestHostHasPortAgreesWithSplitHostPort(t *testing.T) {
	for _, h := range []string{"", "a", "a:", "a:80", "a:b:80", "[::1]", "[::1]:80", "[::1]:", "::1", "[a]b:80",
		"[[a]]:80", "a]:80", "[a:80", "[]:80", "[a]:8]0", "example.com:8080", ":80", "]"} {
		_, _, err := net.SplitHostPort(h)
		if got := hostHasPort(h); got && err != nil {
			t.Errorf("%q: hostHasPort true, SplitHostPort fails: %v", h, err)
		} else if !got && err == nil {
			t.Errorf("%q: hostHasPort false, SplitHostPort succeeds", h)
		}
	}
}
