package caddysnake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func parse(t *testing.T, input string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return h, err
}

func TestCaddyfileShorthand(t *testing.T) {
	h, err := parse(t, `python "main:app"`)
	if err != nil {
		t.Fatal(err)
	}
	if h.ModuleWSGI != "main:app" {
		t.Fatalf("ModuleWSGI = %q", h.ModuleWSGI)
	}
}

func TestCaddyfileBlock(t *testing.T) {
	h, err := parse(t, `python {
		module_wsgi "myapp.wsgi:application"
		working_dir /srv/app
		venv /srv/app/.venv
		threads 8
		max_wait 2s
		interpreters 3
		processes 2
		max_requests 1000
		max_requests_jitter 50
		max_memory 512MiB
		memory_limit 1GiB
		user www-data
		group 33
		free_threaded
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := Handler{ModuleWSGI: "myapp.wsgi:application", WorkingDir: "/srv/app", Venv: "/srv/app/.venv",
		Threads: 8, MaxWait: caddy.Duration(2 * time.Second), Interpreters: 3, Processes: 2, FreeThreaded: true,
		MaxRequests: 1000, MaxRequestsJitter: 50, MaxMemory: 512 << 20, MemoryLimit: 1 << 30, User: "www-data", Group: "33"}
	if !reflect.DeepEqual(*h, want) {
		t.Fatalf("got %+v, want %+v", *h, want)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ input, want string }{
		{`python { bogus 1 }`, `unknown python subdirective "bogus"; allowed: module_wsgi`},
		{`python { threads zero }`, `threads: expected a whole number >= 1`},
		{`python { threads 0 }`, `threads: expected a whole number >= 1`},
		{`python { max_wait soon }`, `max_wait: expected a positive duration`},
		{`python { interpreters many }`, `interpreters: expected a whole number >= 0`},
		{`python { interpreters -2 }`, `interpreters: expected a whole number >= 0`},
		{`python { processes -1 }`, `processes: expected a whole number >= 0`},
		{`python { processes two }`, `processes: expected a whole number >= 0`},
		{`python { max_requests -1 }`, `max_requests: expected a whole number >= 0`},
		{`python { max_requests_jitter lots }`, `max_requests_jitter: expected a whole number >= 0`},
		{`python { max_memory plenty }`, `max_memory: expected a size such as 512MiB`},
		{`python { max_memory 0 }`, `max_memory: expected a size such as 512MiB`},
		{`python { memory_limit lots }`, `memory_limit: expected a size such as 1GiB`},
		{`python { memory_limit 0 }`, `memory_limit: expected a size such as 1GiB`},
		{"python {\n user\n}", `wrong argument count`},
		{`python { free_threaded maybe }`, `free_threaded: expected on or off`},
		{`python a:b c:d`, `python takes one argument`},
		{"python a:b {\n module_wsgi c:d\n}", `the app is already set to "a:b"`},
		{"python {\n working_dir\n}", `wrong argument count`},
		{`python { ws_compression maybe }`, `ws_compression: expected on, off or context_takeover, got "maybe"`},
	} {
		_, err := parse(t, tc.input)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", tc.input, err, tc.want)
		}
	}
}

// provision builds a Handler the way Caddy does and registers its cleanup.
func provision(t *testing.T, h *Handler) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	err := h.Provision(ctx)
	if err == nil {
		t.Cleanup(func() { _ = h.Cleanup() })
	}
	return err
}

func TestProvisionErrors(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	for _, tc := range []struct {
		h    Handler
		want string
	}{
		{Handler{}, "module_wsgi or module_asgi is required"},
		{Handler{ModuleWSGI: "a:b", ModuleASGI: "c:d"}, "either module_wsgi or module_asgi"},
		{Handler{ModuleASGI: "a:b", Threads: 2}, "threads and max_wait apply to WSGI"},
		{Handler{ModuleWSGI: "a:b", Lifespan: "on"}, "apply to ASGI apps"},
		{Handler{ModuleASGI: "a:b", Lifespan: "maybe"}, `lifespan "maybe": expected on, off or auto`},
		{Handler{ModuleASGI: "a:b", WSCompression: "gzip"}, `ws_compression: expected on, off or context_takeover, got "gzip"`},
		{Handler{ModuleWSGI: "a:b", WSCompression: "off"}, "ws_compression apply to ASGI apps"},
		{Handler{ModuleWSGI: "unit_app"}, `expected "module:attribute"`},
		{Handler{ModuleWSGI: "unit_app:x", WorkingDir: "/nonexistent/dir"}, `working_dir "/nonexistent/dir" is not a directory`},
		{Handler{ModuleWSGI: "unit_app:missing", WorkingDir: testdata}, "has no attribute"},
		{Handler{ModuleWSGI: "unit_app:not_callable", WorkingDir: testdata}, "not callable"},
		{Handler{ModuleWSGI: "no_such_module_xyz:app", WorkingDir: testdata}, "no_such_module_xyz"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Threads: -1}, "threads must be at least 1"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Interpreters: -1}, "interpreters must be 0"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Processes: -1}, "processes must be 0"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, MaxRequests: 100}, "recycle worker processes: set processes 1 or more"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, MaxMemory: 1 << 30}, "recycle worker processes: set processes 1 or more"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Processes: 1, MaxRequestsJitter: 5}, "max_requests_jitter 5 without max_requests"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Processes: 1, MaxMemory: -1}, "must not be negative"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, MemoryLimit: 1 << 30}, "memory_limit caps the memory of worker processes"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Processes: 1, MemoryLimit: -1}, "memory_limit must not be negative"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, User: "nobody"}, "user and group apply to worker processes"},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Processes: 1, User: "no-such-user-xyz"}, `user "no-such-user-xyz": user: unknown user`},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Processes: 1, Group: "no-such-group-xyz"}, `group "no-such-group-xyz": group: unknown group`},
		{Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Watch: []string{"[bad"}}, `python: watch: glob "[bad": syntax error in pattern`},
	} {
		h := tc.h
		err := provision(t, &h)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got error %v, want one containing %q", tc.h, err, tc.want)
		}
	}
}

func serveApp(t *testing.T, h *Handler) *httptest.Server {
	t.Helper()
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.ServeHTTP(w, r, nil); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeHello(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	srv := serveApp(t, &Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Threads: 4})
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			code, body := get(t, fmt.Sprintf("%s/req/%d", srv.URL, i))
			if want := fmt.Sprintf("hello from /req/%d", i); code != 200 || body != want {
				t.Errorf("got %d %q, want 200 %q", code, body, want)
			}
		}(i)
	}
	wg.Wait()
}

func TestServeEchoBody(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	srv := serveApp(t, &Handler{ModuleWSGI: "unit_app:echo", WorkingDir: testdata, Threads: 2})
	payload := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB, several reads
	resp, err := http.Post(srv.URL, "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo: got %d bytes, want %d identical", len(got), len(payload))
	}
}

func TestThreadLocalSurvivesBetweenRequests(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	srv := serveApp(t, &Handler{ModuleWSGI: "unit_app:thread_local", WorkingDir: testdata, Threads: 1})
	// Requests run on whichever OS thread serves them; per thread, the
	// count must go 1, 2, 3... (a fresh thread state per request would
	// answer 1 every time).
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		_, body := get(t, srv.URL)
		ident, count, _ := strings.Cut(body, " ")
		if count != strconv.Itoa(seen[ident]+1) {
			t.Fatalf("request %d on thread %s saw threading.local count %q after %d", i, ident, count, seen[ident])
		}
		seen[ident]++
	}
	if len(seen) == 40 {
		t.Fatalf("40 requests ran on 40 threads: threading.local never survived")
	}
}

func TestAppExceptionGives500(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	srv := serveApp(t, &Handler{ModuleWSGI: "unit_app:boom", WorkingDir: testdata, Threads: 1})
	code, body := get(t, srv.URL)
	if code != 500 || !strings.Contains(body, "raised an exception") {
		t.Fatalf("got %d %q", code, body)
	}
	// The thread that served the failure keeps serving.
	if code, _ := get(t, srv.URL); code != 500 {
		t.Fatalf("second request: %d", code)
	}
}

func TestBusyGives503(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	h := &Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Threads: 1, MaxWait: caddy.Duration(50 * time.Millisecond)}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	// Occupy the only thread for 0.5 s.
	slow := make(chan error, 1)
	go func() {
		slow <- h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/sleep", nil), nil)
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil), nil)
	if err == nil || !strings.Contains(err.Error(), "all threads are busy") {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	if waited := time.Since(start); waited > 300*time.Millisecond {
		t.Fatalf("ErrBusy after %v, want about max_wait (50ms)", waited)
	}
	if err := <-slow; err != nil {
		t.Fatalf("the slow request: %v", err)
	}
	// The thread serves again once free.
	rec = httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil), nil); err != nil || rec.Code != 200 {
		t.Fatalf("after the slow request: %v, %d", err, rec.Code)
	}
}

// Abandon (stop's deadline): requests that never return, one in a Python
// loop and one blocked inside C, return from Serve with 503 about a
// second after Abandon, which returns once that grace is over.
func TestAbandonReturnsStuckRequests(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	h := &Handler{ModuleWSGI: "unit_app:stuck", WorkingDir: testdata, Threads: 2, RequestTimeout: -1}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, path := range []string{"/wait", "/loop"} {
		go func() {
			errs <- h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil), nil)
		}()
		time.Sleep(200 * time.Millisecond) // the wait blocks first, so the loop gets the other thread
	}
	start := time.Now()
	h.app.Abandon()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Abandon took %v, want about its 1s grace", took)
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-errs:
			if err == nil || !strings.Contains(err.Error(), "stop's deadline") {
				t.Errorf("a stuck request returned %v, want the 503 of Abandon", err)
			} else if he, ok := err.(caddyhttp.HandlerError); !ok || he.StatusCode != 503 {
				t.Errorf("a stuck request returned %#v, want status 503", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("a stuck request still in Serve 5s after Abandon")
		}
	}
}

func TestCaddyfileTimeouts(t *testing.T) {
	h, err := parse(t, `python {
		module_wsgi "a:b"
		request_timeout 2m
		request_body_timeout off
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if h.RequestTimeout != caddy.Duration(2*time.Minute) || h.RequestBodyTimeout >= 0 {
		t.Fatalf("got %v and %v, want 2m and off (negative)", h.RequestTimeout, h.RequestBodyTimeout)
	}
	if resolveTimeout(h.RequestBodyTimeout, time.Second) != 0 || resolveTimeout(0, time.Second) != time.Second {
		t.Fatalf("resolveTimeout: off must be 0 and unset the default")
	}
	for _, in := range []string{`python { request_timeout soon }`, `python { request_body_timeout -1s }`} {
		if _, err := parse(t, in); err == nil || !strings.Contains(err.Error(), "expected a duration such as 60s, or off") {
			t.Errorf("%s: got %v", in, err)
		}
	}
	bad := Handler{ModuleWSGI: "a:b", RequestTimeout: caddy.Duration(500 * time.Millisecond)}
	if err := bad.checkConfig(); err == nil || !strings.Contains(err.Error(), "request_timeout 500ms is under a second") {
		t.Errorf("got %v", err)
	}
}

// Abandon with nothing in flight returns at once (stop is not held up by
// the grace for nothing).
func TestAbandonIdleReturnsAtOnce(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	h := &Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Threads: 1}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h.app.Abandon()
	if took := time.Since(start); took > 600*time.Millisecond {
		t.Errorf("Abandon of an idle app took %v", took)
	}
}

// user and group are refused unless Caddy runs as root: it could not
// start a worker as someone else.
func TestWorkerUserNeedsRoot(t *testing.T) {
	cred, err := workerCredential("", "0")
	if os.Geteuid() != 0 {
		if err == nil || !strings.Contains(err.Error(), "not root") {
			t.Fatalf("as uid %d: %v, want a refusal naming root", os.Geteuid(), err)
		}
		return
	}
	if err != nil || cred.Uid != 0 || cred.Gid != 0 || cred.Groups == nil || len(cred.Groups) != 0 {
		t.Fatalf("as root, group 0: %+v, %v", cred, err)
	}
	cred, err = workerCredential("nobody", "")
	if err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	if cred.Uid == 0 || cred.Gid == 0 {
		t.Fatalf("nobody: %+v, want its own uid and primary gid", cred)
	}
}

func TestCaddyfileWatch(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  []string
	}{
		{"python {\n\twatch\n}", []string{"*.py"}},
		{"python {\n\twatch *.py templates/**\n\twatch conf.toml\n}", []string{"*.py", "templates/**", "conf.toml"}},
		{"python {\n\tthreads 2\n}", nil},
	} {
		h, err := parse(t, tc.input)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h.Watch, tc.want) {
			t.Errorf("%q: Watch = %q, want %q", tc.input, h.Watch, tc.want)
		}
	}
	// JSON: present and empty means the default globs; absent, no watch.
	var j Handler
	if err := json.Unmarshal([]byte(`{"module_wsgi":"a:b","watch":[]}`), &j); err != nil {
		t.Fatal(err)
	}
	if j.Watch == nil || !reflect.DeepEqual(j.watchGlobs(), DefaultWatchGlobs) {
		t.Errorf(`"watch": [] gives %#v, globs %q`, j.Watch, j.watchGlobs())
	}
	// A watched app is served from one worker process, not Caddy's own.
	h := Handler{ModuleWSGI: "a:b", Watch: []string{}}
	h.watchProcesses()
	if h.Processes != 1 || !h.watchForced {
		t.Errorf("watch with processes 0: processes %d, want 1", h.Processes)
	}
	h = Handler{ModuleWSGI: "a:b", Watch: []string{}, Processes: 3}
	h.watchProcesses()
	if h.Processes != 3 || h.watchForced {
		t.Errorf("watch with processes 3: processes %d, want 3", h.Processes)
	}
}
