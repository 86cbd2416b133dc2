package worker

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The pool against the fake worker (fakeworker_test.go): real processes,
// real socket pairs, no CPython.

func startFake(t *testing.T, n int, env ...string) (*Pool, *observer.ObservedLogs) {
	t.Helper()
	return startFakeWith(t, Options{Processes: n, Env: env})
}

// startFakeWith starts the fake with opts (Processes, Env and the
// recycling settings are taken from it).
func startFakeWith(t *testing.T, opts Options) (*Pool, *observer.ObservedLogs) {
	t.Helper()
	return startFakeConfig(t, engine.Config{WSGI: &engine.WSGIOptions{Target: "fake:app", BodyTimeout: 5 * time.Second}}, opts)
}

// startFakeConfig is startFakeWith for the app config cfg.
func startFakeConfig(t *testing.T, cfg engine.Config, opts Options) (*Pool, *observer.ObservedLogs) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	opts.Exe, opts.Args = exe, []string{"-test.run=^$"}
	opts.Env = append([]string{fakeWorkerEnv + "=1"}, opts.Env...)
	opts.StopBound, opts.Exiting = 2*time.Second, func() bool { return true }
	app, fields, err := Start(cfg, opts, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if len(fields) < 3 || fields[0].Key != "processes" || fields[2].Key != "module_wsgi" {
		t.Fatalf("start-up fields: %+v", fields)
	}
	p := app.(*Pool)
	t.Cleanup(p.Close)
	return p, logs
}

// recorder is an engine.ResponseWriter over an httptest.ResponseRecorder.
type recorder struct {
	*httptest.ResponseRecorder
	mu         sync.Mutex
	statuses   []int
	closeAfter bool
	duplex     bool
	files      int // SendFile calls: a file the worker passed
}

// SendFile is what net/http's does short of the sendfile itself: a short
// file is a short count, no error.
func (rc *recorder) SendFile(f *os.File, n int64) (int64, error) {
	rc.files++
	return io.Copy(rc.ResponseRecorder, io.LimitReader(f, n))
}

func newRecorder() *recorder { return &recorder{ResponseRecorder: httptest.NewRecorder()} }

func (rc *recorder) WriteHeader(status int) {
	rc.statuses = append(rc.statuses, status)
	if status >= 200 {
		rc.ResponseRecorder.WriteHeader(status)
	}
}
func (rc *recorder) Flush() error                     { rc.ResponseRecorder.Flush(); return nil }
func (rc *recorder) SetReadDeadline(time.Time) error  { return nil }
func (rc *recorder) SetWriteDeadline(time.Time) error { return nil }
func (rc *recorder) EnableFullDuplex() error          { rc.duplex = true; return nil }
func (rc *recorder) CloseAfterResponse() bool         { rc.closeAfter = true; return true }
func (rc *recorder) AcceptWebSocket(engine.WebSocketOptions) (engine.WebSocket, error) {
	return nil, errors.New("no websockets here")
}

func request(path string, body []byte) *engine.Request {
	r := &engine.Request{Method: "GET", Path: path, RawPath: path, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Host: "example.com", Header: http.Header{}, RemoteAddr: "127.0.0.1:1234", Done: make(chan struct{})}
	if q := strings.IndexByte(path, '?'); q >= 0 {
		r.Path, r.RawQuery = path[:q], path[q+1:]
	}
	if body != nil {
		r.Method = "POST"
		r.ContentLength = int64(len(body))
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return r
}

func status(err error) int {
	var e *engine.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return -1
}

func TestPoolServesFromEveryWorker(t *testing.T) {
	p, _ := startFake(t, 2)
	pids := map[string]bool{}
	for i := 0; i < 20; i++ {
		rc := newRecorder()
		if err := p.Serve(request("/pid", nil), rc); err != nil {
			t.Fatal(err)
		}
		if rc.Code != 200 || rc.Header().Get("Content-Type") != "text/plain" {
			t.Fatalf("status %d, header %v", rc.Code, rc.Header())
		}
		pids[rc.Body.String()] = true
	}
	if len(pids) != 2 {
		t.Fatalf("pids seen: %v, want 2", pids)
	}
}

func TestPoolWholeResponse(t *testing.T) {
	p, _ := startFake(t, 1)
	rc := newRecorder()
	if err := p.Serve(request("/whole", nil), rc); err != nil {
		t.Fatal(err)
	}
	if rc.Code != 201 || rc.Header().Get("X-Whole") != "1" || rc.Body.String() != "all at once" || !rc.closeAfter {
		t.Fatalf("status %d, header %v, body %q, close %v; want 201, X-Whole, the body, close",
			rc.Code, rc.Header(), rc.Body.String(), rc.closeAfter)
	}
}

func TestPoolEchoesBodies(t *testing.T) {
	p, _ := startFake(t, 1)
	for _, n := range []int{1, 1000, 64 << 10, 64<<10 + 1, 1 << 20} {
		body := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		for _, unknown := range []bool{false, true} {
			r := request("/echo", body)
			if unknown {
				r.ContentLength = -1
			}
			rc := newRecorder()
			if err := p.Serve(r, rc); err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			if !bytes.Equal(rc.Body.Bytes(), body) {
				t.Fatalf("%d bytes (unknown length %v): echoed %d", n, unknown, rc.Body.Len())
			}
			if rc.Header().Get("X-Echo") != "1" || !rc.duplex || rc.closeAfter {
				t.Fatalf("%d bytes: header %v, duplex %v, closeAfter %v", n, rc.Header(), rc.duplex, rc.closeAfter)
			}
		}
	}
}

// errBody fails after some bytes, as a body over its limit does.
type errBody struct{ sent bool }

func (b *errBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "some"), nil
	}
	return 0, &http.MaxBytesError{Limit: 4}
}
func (b *errBody) Close() error { return nil }

func TestPoolBodyErrorKind(t *testing.T) {
	p, _ := startFake(t, 1)
	r := request("/echo", nil)
	r.Method, r.ContentLength, r.Body = "POST", -1, &errBody{}
	rc := newRecorder()
	// The fake answers a failed body with 400 + its kind.
	if err := p.Serve(r, rc); status(err) != 400+BodyErrTooLarge {
		t.Fatalf("got %v, want %d", err, 400+BodyErrTooLarge)
	}
	if !rc.closeAfter {
		t.Fatal("a body not read to its end must close the connection")
	}
}

func TestPoolHintsAndTrailers(t *testing.T) {
	p, _ := startFake(t, 1)
	rc := newRecorder()
	rc.Header().Set("Server", "Caddy")
	rc.Header().Set("X-Stale", "x")
	if err := p.Serve(request("/hints", nil), rc); err != nil {
		t.Fatal(err)
	}
	if len(rc.statuses) != 2 || rc.statuses[0] != 103 || rc.statuses[1] != 200 || rc.Body.String() != "hinted" {
		t.Fatalf("statuses %v, body %q", rc.statuses, rc.Body.String())
	}
	if rc.Header().Get("Server") != "Caddy" || rc.Header().Get("X-Stale") != "" || rc.Header().Get("Link") != "" {
		t.Fatalf("header %v: Caddy's Server kept, others replaced by the head", rc.Header())
	}
	rc = newRecorder()
	if err := p.Serve(request("/trailers", nil), rc); err != nil {
		t.Fatal(err)
	}
	if rc.Header().Get("X-Sum") != "42" || rc.Body.String() != "body" {
		t.Fatalf("trailer: header %v body %q", rc.Header(), rc.Body.String())
	}
}

func TestPoolWorkerCrash(t *testing.T) {
	p, logs := startFake(t, 2)
	if err := p.Serve(request("/exit", nil), newRecorder()); status(err) != 502 {
		t.Fatalf("crash before the head: got %v, want 502", err)
	}
	if err := p.Serve(request("/exit-mid", nil), newRecorder()); err != engine.ErrAbort {
		t.Fatalf("crash after the head: got %v, want ErrAbort", err)
	}
	// Both workers died: within the back-off they come back.
	deadline := time.Now().Add(5 * time.Second)
	ok := 0
	for ok < 20 && time.Now().Before(deadline) {
		if err := p.Serve(request("/pid", nil), newRecorder()); err == nil {
			ok++
		} else if status(err) != 503 {
			t.Fatalf("while restarting: %v", err)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if ok < 20 {
		t.Fatalf("%d requests served after the crashes", ok)
	}
	died := logs.FilterMessage("python: worker process died; its requests in flight failed").All()
	if len(died) != 2 {
		t.Fatalf("%d crash log lines, want 2", len(died))
	}
	codes := map[int64]bool{}
	for _, e := range died {
		m := e.ContextMap()
		if m["app"] != "fake:app" || m["pid"] == nil {
			t.Fatalf("crash log: %v", m)
		}
		codes[m["exit_status"].(int64)] = true
	}
	if !codes[3] || !codes[4] {
		t.Fatalf("exit statuses logged: %v", codes)
	}
}

func TestPoolGivesUp(t *testing.T) {
	fail := filepath.Join(t.TempDir(), "fail")
	p, logs := startFake(t, 1, failFileEnv+"="+fail)
	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.Serve(request("/exit", nil), newRecorder())
	// 100+200+400+800+1600 ms of back-off, then it gives up.
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("giving up").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slot was not given up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := logs.FilterMessage("python: worker process failed to start; trying again").Len(); n != maxFailures-1 {
		t.Fatalf("%d retries logged, want %d", n, maxFailures-1)
	}
	if err := p.Serve(request("/pid", nil), newRecorder()); status(err) != 503 {
		t.Fatalf("no live worker: got %v, want 503", err)
	}
}

func TestPoolLoadFailure(t *testing.T) {
	fail := filepath.Join(t.TempDir(), "fail")
	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	_, _, err := Start(engine.Config{WSGI: &engine.WSGIOptions{Target: "fake:app"}}, Options{
		Processes: 2, Exe: exe, Args: []string{"-test.run=^$"},
		Env: []string{fakeWorkerEnv + "=1", failFileEnv + "=" + fail},
	}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "told to fail") {
		t.Fatalf("got %v, want the worker's load error", err)
	}
}

func TestPoolCloseDrainsAndReaps(t *testing.T) {
	p, _ := startFake(t, 2)
	var pids []int
	p.mu.Lock()
	for pr := range p.all {
		pids = append(pids, pr.pid)
	}
	p.mu.Unlock()
	// A request in flight holds its worker's drain until it ends.
	done := make(chan error, 1)
	go func() { done <- p.Serve(request("/sleep?300", nil), newRecorder()) }()
	time.Sleep(100 * time.Millisecond)
	p.Close()
	if err := <-done; err != nil {
		t.Fatalf("the request in flight during Close: %v", err)
	}
	for _, pid := range pids {
		// Reaped (cmd.Wait): no such process, not even a zombie.
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Fatalf("worker %d still exists after Close (%v)", pid, err)
		}
	}
	if err := p.Serve(request("/pid", nil), newRecorder()); status(err) != 503 {
		t.Fatalf("after Close: got %v, want 503", err)
	}
}

func TestPoolCancel(t *testing.T) {
	p, _ := startFake(t, 1)
	r := request("/hang", nil)
	gone := make(chan struct{})
	r.Done = gone
	time.AfterFunc(100*time.Millisecond, func() { close(gone) })
	// The fake ends a stream with ErrAbort when FrameCancel reaches it.
	if err := p.Serve(r, newRecorder()); err != engine.ErrAbort {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestPoolAbandonKillsHangs(t *testing.T) {
	p, _ := startFake(t, 1)
	done := make(chan error, 1)
	go func() { done <- p.Serve(request("/hang", nil), newRecorder()) }()
	time.Sleep(100 * time.Millisecond)
	go p.Close()
	time.Sleep(100 * time.Millisecond)
	p.Abandon()
	select {
	case err := <-done:
		if status(err) != 502 {
			t.Fatalf("abandoned: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Abandon left the request hanging")
	}
}

// A worker busy with a request is passed over while the other is idle.
func TestPoolPicksLeastBusy(t *testing.T) {
	p, _ := startFake(t, 2)
	busy := make(chan string, 1)
	go func() {
		rc := newRecorder()
		_ = p.Serve(request("/sleep?600", nil), rc)
		busy <- "done"
	}()
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	pids := map[string]bool{}
	for i := 0; i < 6; i++ {
		rc := newRecorder()
		if err := p.Serve(request("/pid", nil), rc); err != nil {
			t.Fatal(err)
		}
		pids[rc.Body.String()] = true
	}
	if len(pids) != 1 || time.Since(start) > 300*time.Millisecond {
		t.Fatalf("while one worker was busy: pids %v in %v, want the idle one only, at once", pids, time.Since(start))
	}
	<-busy
}

// A worker killed from outside (an OOM kill) is logged with its signal
// and replaced.
func TestPoolWorkerKilled(t *testing.T) {
	p, logs := startFake(t, 1)
	rc := newRecorder()
	if err := p.Serve(request("/pid", nil), rc); err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(rc.Body.String())
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("python: worker process restarted").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("not restarted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	died := logs.FilterMessage("python: worker process died; its requests in flight failed").All()
	if len(died) != 1 || died[0].ContextMap()["signal"] != int64(9) || died[0].ContextMap()["exit"] != "signal SIGKILL (killed)" {
		t.Fatalf("death logged as %v", died)
	}
	rc = newRecorder()
	if err := p.Serve(request("/pid", nil), rc); err != nil || rc.Body.String() == strconv.Itoa(pid) {
		t.Fatalf("after the restart: %v, pid %s (the killed one was %d)", err, rc.Body.String(), pid)
	}
}

// Threads (metrics, the admin view) is one interpreter's WSGI threads: the
// callers multiply by interpreters themselves.
func TestPoolThreadsPerInterpreter(t *testing.T) {
	p, _ := startFakeConfig(t, engine.Config{Interpreters: 2,
		WSGI: &engine.WSGIOptions{Target: "fake:app", Threads: 16, BodyTimeout: 5 * time.Second}}, Options{Processes: 1})
	if got := p.Threads(); got != 16 {
		t.Fatalf("Threads() = %d, want 16 (WSGI threads 16, interpreters 2)", got)
	}
}
