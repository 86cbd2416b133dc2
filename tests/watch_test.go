package tests

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `watch`: the app's files are polled, and a change reloads the app in new
// worker processes (processes 0 is served as 1), the old ones draining.

// watchWSGI is a WSGI app whose answer is its VERSION; /slow answers after
// a second and a half (a request in flight across a reload).
const watchWSGI = `import time

VERSION = %q


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [VERSION.encode()]
`

// watchASGI answers its VERSION and what its lifespan startup saw.
const watchASGI = `import asyncio

VERSION = %q
state = {"started": "no"}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                state["started"] = VERSION
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    body = (VERSION + " started=" + state["started"]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
`

// writeApp writes app.py in dir from a template and a version.
func writeApp(t *testing.T, dir, tmpl, version string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(fmt.Sprintf(tmpl, version)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// watchSite serves dir/app.py with watch.
func watchSite(dir, iface string, extra ...string) string {
	return fmt.Sprintf(`http://127.0.0.1:{{PORT}} {
	python {
		module_%s "app:app"
		working_dir %s
		watch
		%s
	}
}
`, iface, dir, strings.Join(extra, "\n\t\t"))
}

// waitBody polls GET path until its body is want, at most 5 s.
func waitBody(t *testing.T, c *caddy, path, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		status, b, err := c.fetch("GET", path, nil)
		last = fmt.Sprintf("%d %q %v", status, b, err)
		if err == nil && status == 200 && string(b) == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: %s after 5s, want 200 %q", path, last, want)
}

// slowGet starts GET /slow; the channel gets its status and body.
func slowGet(c *caddy) chan string {
	out := make(chan string, 1)
	go func() {
		resp, err := c.Client.Get(c.URL("/slow"))
		if err != nil {
			out <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	return out
}

// reloadsLogged counts the reloads the log reports.
func reloadsLogged(c *caddy) int { return strings.Count(c.Log(), "files changed, reloading the app") }

func testWatchReload(t *testing.T, iface, tmpl string, mode []string) {
	dir := t.TempDir()
	writeApp(t, dir, tmpl, "v1")
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCaddy(t, watchSite(dir, iface, mode...))
	suffix := ""
	if iface == "asgi" {
		suffix = " started=v1"
	}
	waitBody(t, c, "/", "v1"+suffix)
	if len(mode) == 0 && processesMode == 0 && !strings.Contains(c.Log(), "served from 1 worker process") {
		t.Errorf("the start-up line does not say a watched app runs in a worker process")
	}

	// A change no glob matches reloads nothing.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := reloadsLogged(c); n != 0 {
		t.Fatalf("a change to notes.txt reloaded the app (%d reloads)", n)
	}

	// A request in flight across the reload finishes, on the old code.
	slow := slowGet(c)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	writeApp(t, dir, tmpl, "version-two")
	if iface == "asgi" {
		suffix = " started=version-two"
	}
	waitBody(t, c, "/", "version-two"+suffix)
	t.Logf("reloaded %v after the edit", time.Since(start).Round(10*time.Millisecond))
	want := "200 v1"
	if iface == "asgi" {
		want = "200 v1 started=v1"
	}
	select {
	case got := <-slow:
		if got != want {
			t.Errorf("the request in flight during the reload: %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight during the reload did not finish")
	}
	if n := reloadsLogged(c); n != 1 {
		t.Errorf("one edit: %d reloads logged, want 1", n)
	}
}

func TestWatchReloadsWSGI(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, mode ...string) { testWatchReload(t, "wsgi", watchWSGI, mode) })
}

func TestWatchReloadsASGI(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, mode ...string) { testWatchReload(t, "asgi", watchASGI, mode) })
}

// A reload that fails keeps the old app serving and logs its traceback
// once; fixing the file reloads.
func TestWatchSyntaxErrorKeepsOldApp(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, mode ...string) {
		dir := t.TempDir()
		writeApp(t, dir, watchWSGI, "v1")
		c := startCaddy(t, watchSite(dir, "wsgi", mode...))
		waitBody(t, c, "/", "v1")

		broken := "def app(environ, start_response:\n    pass\n"
		if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		if !c.waitLog(5*time.Second, "reload failed") {
			t.Fatal("no reload failure logged within 5s of a syntax error")
		}
		// Long enough for a retry or a second worker to log it again.
		time.Sleep(2 * time.Second)
		if n := strings.Count(c.Log(), "Traceback (most recent call last)"); n != 1 {
			t.Errorf("the SyntaxError's traceback is logged %d times, want once", n)
		}
		if !strings.Contains(c.Log(), "SyntaxError: ") {
			t.Errorf("the failed reload's log does not name the SyntaxError")
		}
		for range 5 {
			if b := c.get(t, "/", http.StatusOK); string(b) != "v1" {
				t.Fatalf("after a failed reload: %q, want the old app's v1", b)
			}
		}
		writeApp(t, dir, watchWSGI, "fixed")
		waitBody(t, c, "/", "fixed")
		if n := strings.Count(c.Log(), "Traceback (most recent call last)"); n != 1 {
			t.Errorf("after the fix %d tracebacks are logged, want the one", n)
		}
	})
}

// A config reload stops the old handler's watcher: one polling goroutine
// after several reloads, and one edit is one app reload.
func TestWatchStopsOnConfigReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeApp(t, dir, watchWSGI, "v1")
	c := startCaddy(t, watchSite(dir, "wsgi", "threads 4"))
	waitBody(t, c, "/", "v1")
	for i := range 3 {
		c.reload(t, watchSite(dir, "wsgi", fmt.Sprintf("threads %d", 5+i)))
		waitBody(t, c, "/", "v1")
	}
	pollers := func() int {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=2", c.adminPort))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Count(string(b), "internal/watch.(*Watcher).loop")
	}
	deadline := time.Now().Add(5 * time.Second)
	n := pollers()
	for n != 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n = pollers()
	}
	if n != 1 {
		t.Fatalf("%d watchers polling after 3 config reloads, want 1", n)
	}
	writeApp(t, dir, watchWSGI, "version-two")
	waitBody(t, c, "/", "version-two")
	time.Sleep(1500 * time.Millisecond)
	if n := reloadsLogged(c); n != 1 {
		t.Errorf("one edit after 3 config reloads: %d app reloads, want 1", n)
	}
}
