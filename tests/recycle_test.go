package tests

import (
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Recycling worker processes: max_requests, max_memory, and request_timeout
// escalating to a replacement.

// loadUntil sends GET path from n goroutines until stop is closed; it
// returns how many requests failed (not 200, or no response) and one of
// the failures.
func loadUntil(c *caddy, n int, path string, stop <-chan struct{}) func() (int64, string) {
	var failed, done atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				status, _, err := c.fetch("GET", path, nil)
				done.Add(1)
				if err != nil || status != 200 {
					failed.Add(1)
					first.CompareAndSwap(nil, fmt.Sprintf("status %d, err %v", status, err))
				}
			}
		}()
	}
	return func() (int64, string) {
		wg.Wait()
		s, _ := first.Load().(string)
		return failed.Load(), fmt.Sprintf("%s (of %d)", s, done.Load())
	}
}

// After max_requests (+ jitter) a new worker answers, and no request
// failed while workers were replaced under load.
func TestProcessesMaxRequests(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app",
		"processes 1", "max_requests 20", "max_requests_jitter 5"))
	stop := make(chan struct{})
	wait := loadUntil(c, 3, "/echo", stop)
	pids := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(pids) < 3 && time.Now().Before(deadline) {
		status, body, err := c.fetch("GET", "/pid", nil)
		if err != nil || status != 200 {
			t.Errorf("GET /pid: %d, %v", status, err)
		} else {
			pids[string(body)] = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	if failed, why := wait(); failed > 0 {
		t.Errorf("%d requests failed while workers were recycled: %s", failed, why)
	}
	if len(pids) < 3 {
		t.Fatalf("pids that answered in 30s: %v, want 3 (two recycles)", pids)
	}
	if !c.waitLog(5*time.Second, "worker process recycled", `"reason":"max_requests"`) {
		t.Errorf("no recycle in the log:\n%s", c.Log())
	}
}

// A worker whose RSS passes max_memory is replaced; no request fails.
func TestProcessesMaxMemory(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app",
		"processes 1", "max_memory 200MiB"))
	first := string(c.get(t, "/pid", 200))
	stop := make(chan struct{})
	wait := loadUntil(c, 2, "/echo", stop)
	// Each /leak keeps 32 MiB resident: past 200 MiB within 7 of them.
	for i := 0; i < 7; i++ {
		c.get(t, "/leak", 200)
	}
	deadline := time.Now().Add(15 * time.Second)
	var now string
	for time.Now().Before(deadline) {
		if now = string(c.get(t, "/pid", 200)); now != first {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	if failed, why := wait(); failed > 0 {
		t.Errorf("%d requests failed while the worker was recycled: %s", failed, why)
	}
	if now == first {
		t.Fatalf("worker %s still answers 15s after it leaked past max_memory\n%s", first, c.Log())
	}
	if !c.waitLog(5*time.Second, `"reason":"max_memory"`) {
		t.Errorf("no max_memory recycle in the log:\n%s", c.Log())
	}
}

// A request stuck in C past request_timeout gets its worker replaced:
// with the GIL released (the engine writes the thread off, answers 504,
// and the worker asks for a replacement), or held (the worker is stuck
// whole; Caddy sees the request run past the bound).
func TestProcessesStuckInC(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		asgi       bool
		bound      time.Duration // from the request to a new pid answering
		status     int           // the stuck request's (0: any but 200)
	}{
		{"WSGI/csleep", "/csleep", false, 10 * time.Second, 504},
		{"WSGI/cspin", "/cspin", false, 25 * time.Second, 0},
		// The event loop is stuck: the engine cannot answer; Caddy sees
		// the stream run past request_timeout + 5s.
		{"ASGI/cspin", "/cspin", true, 25 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			site := pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app", "processes 1", "request_timeout 1s")
			if tc.asgi {
				site = asgiSite(t, "asgi_procs:app", "processes 1", "request_timeout 1s")
			}
			c := startCaddy(t, site)
			first := string(c.get(t, "/pid", 200))
			start := time.Now()
			res := make(chan int, 1)
			go func() {
				status, _, _ := c.fetch("GET", tc.path, nil)
				res <- status
			}()
			if tc.status != 0 {
				if got := <-res; got != tc.status {
					t.Errorf("GET %s: %d, want %d", tc.path, got, tc.status)
				}
			}
			var now string
			for time.Since(start) < tc.bound {
				status, body, err := c.fetch("GET", "/pid", nil)
				if err == nil && status == 200 && string(body) != first {
					now = string(body)
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if now == "" {
				t.Fatalf("no new worker answered within %v of GET %s\n%s", tc.bound, tc.path, c.Log())
			}
			if !c.waitLog(5*time.Second, `"reason":"request_timeout"`) {
				t.Errorf("no request_timeout recycle in the log:\n%s", c.Log())
			}
			if tc.status == 0 {
				select {
				case got := <-res:
					if got == 200 {
						t.Errorf("GET %s: 200 from a stuck worker", tc.path)
					}
				case <-time.After(20 * time.Second):
					t.Errorf("GET %s: no answer 20s after its worker was replaced", tc.path)
				}
			}
			t.Logf("GET %s: new worker %s after %v", tc.path, now, time.Since(start).Round(100*time.Millisecond))
		})
	}
}

// user and group: the workers run with the group given and no
// supplementary groups. The user stays root here: libpython under a
// root-only home would be out of another user's reach on test machines.
func TestProcessesGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("user and group need caddy to run as root")
	}
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		if g, err = user.LookupGroup("nobody"); err != nil {
			t.Skip("no group nogroup or nobody here")
		}
	}
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app",
		"processes 1", "user root", "group "+g.Name))
	if got, want := string(c.get(t, "/ids", 200)), "0 "+g.Gid+" []"; got != want {
		t.Fatalf("worker's uid gid [groups]: %q, want %q", got, want)
	}
}

// An ASGI response that streams is exempt from request_timeout, as in
// process: its worker is not replaced however long it streams.
func TestProcessesStreamingNotStuck(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, asgiSite(t, "asgi_procs:app", "processes 1", "request_timeout 1s"))
	first := string(c.get(t, "/pid", 200))
	body := c.get(t, "/slowstream", 200)
	if n := len(strings.Fields(string(body))); n != 16 {
		t.Fatalf("streamed %d lines, want 16: %q", n, body)
	}
	if now := string(c.get(t, "/pid", 200)); now != first {
		t.Fatalf("worker %s replaced by %s during a streamed response", first, now)
	}
	if strings.Contains(c.Log(), "recycling a worker process") {
		t.Fatalf("a recycle in the log:\n%s", c.Log())
	}
}
