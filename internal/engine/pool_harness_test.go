package engine

import (
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The pool and lane tests drive a pool of their own (newPool) over the
// app object of testdata/pool_app.py, loaded once per test through Load:
// they reach the C lane only through the pool's Go methods.

// loadPoolApp loads testdata/pool_app.py:app on the main interpreter.
func loadPoolApp(t *testing.T) *WSGIApp {
	t.Helper()
	testdata, _ := filepath.Abs("testdata")
	app, _, err := Load(Config{WSGI: &WSGIOptions{Target: "pool_app:app", WorkingDir: testdata, Threads: 1,
		MaxWait: time.Second}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	return app.(*WSGIApp)
}

// testPool is a pool over a's app object; it is closed (and waited for) at
// the end of the test, before a is.
func testPool(t *testing.T, a *WSGIApp, threads int, maxWait time.Duration) *pool {
	t.Helper()
	p, err := newPool(a.interp, a.obj, threads, maxWait, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closePool(t, p) })
	return p
}

// closePool closes p and waits until it is gone, failing the test if a
// worker thread was left behind or closing takes over 15 s.
func closePool(t *testing.T, p *pool) {
	t.Helper()
	done := make(chan bool, 1)
	p.close(func(leaked bool) { done <- leaked })
	select {
	case leaked := <-done:
		if leaked {
			t.Error("pool closed with a worker thread written off")
		}
	case <-time.After(15 * time.Second):
		t.Error("pool did not finish closing in 15 s")
	}
}

// testJob is one request in flight on a slot of a test pool.
type testJob struct {
	p   *pool
	wk  *slot
	req *wsgiRequest
	rec *httptest.ResponseRecorder
}

// startJob lays out a GET or POST of target (path?query) in a slot and
// submits it; body, if any, is read by the app through go_read (no
// preload). It returns once a worker thread took the job, or with
// submit's error (the slot is back in the pool then).
func startJob(p *pool, a *WSGIApp, target string, body io.Reader, cancel <-chan struct{}) (*testJob, error) {
	method := "GET"
	if body != nil {
		method = "POST"
	}
	path, query, _ := strings.Cut(target, "?")
	wk := p.get()
	rec := httptest.NewRecorder()
	req := &wsgiRequest{app: a, w: testWriter{rec}, r: testRequest(httptest.NewRequest(method, target, body))}
	wk.seq.Add(1)
	wk.cur.Store(req)
	s := &wk.strs
	s.reset()
	for _, f := range []string{method, "", path, query, "HTTP/1.1", "http", "example.com", "80", "192.0.2.1",
		"4000", "Host", "example.com"} {
		s.add(f)
	}
	if err := p.submit(wk, len(s.ends), -1, cancel); err != nil {
		wk.cur.Store(nil)
		p.put(wk)
		return nil, err
	}
	return &testJob{p: p, wk: wk, req: req, rec: rec}, nil
}

// finish waits for the job's end, sending its frames and then a whole
// response to the recorder, and puts the slot back; it returns
// caddysnake.wsgi.serve's result code.
func (j *testJob) finish() int {
	rc := j.req.collect(j.wk, uint64(j.wk.handle()))
	if out := j.wk.job.out; out.n > 0 {
		j.req.sendWhole(out)
	}
	j.wk.cur.Store(nil)
	j.p.put(j.wk)
	return rc
}

// finishWithin runs finish, failing the test if the job takes longer than d.
func (j *testJob) finishWithin(t *testing.T, d time.Duration) (rc int, body string) {
	t.Helper()
	done := make(chan int, 1)
	go func() { done <- j.finish() }()
	select {
	case rc = <-done:
		return rc, j.rec.Body.String()
	case <-time.After(d):
		t.Fatalf("job did not finish within %v", d)
		return 0, ""
	}
}

// holdFile is a path whose creation lets /hold jobs (pool_app.py) return.
func holdFile(t *testing.T) (path string, release func()) {
	path = filepath.Join(t.TempDir(), "release")
	return path, func() {
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Error(err)
		}
	}
}

// serveOne runs target start to end on p.
func serveOne(t *testing.T, p *pool, a *WSGIApp, target string) string {
	t.Helper()
	j, err := startJob(p, a, target, nil, nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	if rc, body := j.finishWithin(t, 10*time.Second); rc != wsgiOK {
		t.Fatalf("%s: rc %d, body %q", target, rc, body)
	} else {
		return body
	}
	return ""
}
