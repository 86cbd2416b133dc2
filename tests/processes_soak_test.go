package tests

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Worker processes over many reloads and restarts: no request lost, and
// nothing of the old workers left in Caddy.

// With processes N a reload starts the new workers before the old ones
// drain: every request sent during 20 reloads under load is answered 200
// with the app's answer; nothing is tolerated (no 503, no reset).
func TestProcessesReloadsLoseNoRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("20 reloads under load; skipped with -short")
	}
	t.Parallel()
	sites := []string{procSite(t, false), procSite(t, false, "threads 4")}
	c := startCaddy(t, sites[0])
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served, retried atomic.Int64
	lost := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// GET: a client retries it when a kept-alive connection
				// is closed under it (net/http does, as browsers do; the
				// one retry here covers a reset net/http does not retry).
				// What is left is a request the server took and failed.
				status, b, err := c.fetch("GET", "/pid", nil)
				if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
					retried.Add(1)
					status, b, err = c.fetch("GET", "/pid", nil)
				}
				if err == nil && status == 200 && len(b) > 0 {
					served.Add(1)
					continue
				}
				select {
				case lost <- fmt.Sprintf("GET /pid (client %d, request %d): %d %.80q %v", g, i, status, b, err):
				default:
				}
			}
		}(g)
	}
	for i := 1; i <= 20; i++ {
		time.Sleep(100 * time.Millisecond)
		c.reload(t, sites[i%2])
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(lost)
	n := 0
	for msg := range lost {
		if n++; n <= 10 {
			t.Error(msg)
		}
	}
	if n > 0 {
		t.Errorf("%d requests lost during 20 reloads (%d served)", n, served.Load())
	}
	t.Logf("during 20 reloads: %d requests served, %d retried once after a reset", served.Load(), retried.Load())
	if served.Load() < 200 {
		t.Errorf("only %d requests served during 20 reloads", served.Load())
	}
}

// Caddy's own memory and descriptors stay flat while workers serve 10,000
// requests and are replaced 50 times (max_requests 20; a replacement takes
// a few hundred ms to start, the old worker serves meanwhile): the pool
// frees what each old worker held (its socket, its goroutines' buffers,
// its stderr pipe).
func TestProcessesCaddyFlatAcrossRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 requests and 50 worker restarts; skipped with -short")
	}
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app",
		"processes 1", "max_requests 20", "threads 4"))
	var sent atomic.Int64
	echo := func(n int) {
		t.Helper()
		var next, failed atomic.Int64
		var first atomic.Value
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > int64(n) {
						return
					}
					body := strings.Repeat("x", int(i%64)*100)
					status, b, err := c.fetch("POST", "/echo", []byte(body))
					if err != nil || status != 200 || string(b) != body {
						failed.Add(1)
						first.CompareAndSwap(nil, fmt.Sprintf("request %d: %d %v", i, status, err))
					}
				}
			}()
		}
		wg.Wait()
		sent.Add(int64(n))
		if failed.Load() > 0 {
			t.Fatalf("%d of %d requests failed: %v", failed.Load(), n, first.Load())
		}
	}
	recycled := func() int { return strings.Count(c.Log(), "worker process recycled") }
	// load sends requests until the log holds n recycles and m more
	// requests went out, within two minutes.
	load := func(n int, m int64) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for until := sent.Load() + m; recycled() < n || sent.Load() < until; {
			if time.Now().After(deadline) {
				t.Fatalf("after 2 minutes: %d recycles (want %d), %d requests", recycled(), n, sent.Load())
			}
			echo(500)
		}
	}
	count := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	// fds counts Caddy's descriptors without the test's own kept-alive
	// connections (how many the 8 clients keep varies): they are closed,
	// and the count taken once Caddy closed its ends (steady for 200 ms).
	fds := func() int {
		c.Client.CloseIdleConnections()
		n, deadline := count(), time.Now().Add(3*time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			m := count()
			if m == n {
				break
			}
			n = m
		}
		return n
	}
	// settled: the last replacement is the only worker (the old ones
	// drained and were reaped), so what Caddy holds is one worker's.
	settled := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(c.workerPids(t)) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("%d workers 10 s after the load, want 1", len(c.workerPids(t)))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	load(5, 2000) // warm-up: Caddy's pools and buffers grown
	settled()
	rss0, fd0, r0, s0 := c.rss(t), fds(), recycled(), sent.Load()
	load(r0+50, 10_000)
	settled()
	rss1, fd1, r1, s1 := c.rss(t), fds(), recycled(), sent.Load()
	t.Logf("%d requests, %d worker restarts: Caddy RSS %.1f -> %.1f MiB, fds %d -> %d",
		s1-s0, r1-r0, float64(rss0)/(1<<20), float64(rss1)/(1<<20), fd0, fd1)
	if asanRun() {
		t.Logf("ASAN_OPTIONS is set: RSS growth reported, not asserted")
	} else if d := rss1 - rss0; d >= 10<<20 {
		t.Errorf("Caddy's RSS grew by %.1f MiB across %d worker restarts (want < 10 MiB)", float64(d)/(1<<20), r1-r0)
	}
	if fd1 > fd0+2 {
		t.Errorf("Caddy holds %d descriptors after %d worker restarts, %d before: the old workers' are not closed", fd1, r1-r0, fd0)
	}
}
