package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type memProbe struct {
	Blocks int64 `json:"blocks"`
	GC     int64 `json:"gc"`
}

func probe(t *testing.T, c *caddy) (memProbe, int64) {
	t.Helper()
	var p memProbe
	if err := json.Unmarshal(c.get(t, "/probe", 200), &p); err != nil {
		t.Fatalf("probe: %v", err)
	}
	return p, c.rss(t)
}

// hammer sends n POST /hello requests from `workers` keep-alive clients and
// checks every answer. With mix, two in three go to /whole instead, one of
// them with a body large enough to be sent by reference (wsgi_memory.py).
func hammer(t *testing.T, c *caddy, n, workers int, mix bool) {
	t.Helper()
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) || failed.Load() > 0 {
					return
				}
				body := []byte(fmt.Sprintf("ping-%d", i))
				path, pad := "/hello", 0
				if mix && i%3 != 0 {
					pad = int(i%3-1) * 40_000
					path = fmt.Sprintf("/whole?pad=%d", pad)
				}
				status, b, err := c.fetch("POST", path, body)
				if want := "hello " + string(body) + "\n" + strings.Repeat(".", pad); err != nil || status != 200 || string(b) != want {
					if failed.Add(1) == 1 {
						firstErr.Store(fmt.Sprintf("request %d (%s): %d %.200q %v, want 200 %.200q", i, path, status, b, err, want))
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("requests failed: %v", firstErr.Load())
	}
}

func TestMemoryDoesNotLeakPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("the leak check sends 52,000 requests; skipped with -short")
	}
	checkNoLeak(t, startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_memory:app", "threads 16")), true)
}

func TestMemoryDoesNotLeakPerRequestASGI(t *testing.T) {
	if testing.Short() {
		t.Skip("the leak check sends 52,000 requests; skipped with -short")
	}
	checkNoLeak(t, startCaddy(t, asgiSite(t, "asgi_memory:app")), false)
}

// checkNoLeak serves 50,000 requests (after a warm-up) and asserts that
// Python's allocated blocks, its gc-tracked objects and the process RSS
// stay flat: a per-request reference leak in the bridge shows up as about
// one block per request or more.
func checkNoLeak(t *testing.T, c *caddy, mix bool) {
	t.Helper()
	hammer(t, c, 2000, 16, mix)
	p0, rss0 := probe(t, c)

	const n = 50_000
	start := time.Now()
	hammer(t, c, n, 16, mix)
	elapsed := time.Since(start)
	p1, rss1 := probe(t, c)

	dBlocks := p1.Blocks - p0.Blocks
	dRSS := rss1 - rss0
	t.Logf("%d requests in %v (%.0f req/s)", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	t.Logf("python allocated blocks: %d -> %d (%+d)", p0.Blocks, p1.Blocks, dBlocks)
	t.Logf("python gc objects:       %d -> %d (%+d)", p0.GC, p1.GC, p1.GC-p0.GC)
	t.Logf("process RSS:             %.1f MiB -> %.1f MiB (%+.1f MiB)", float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(dRSS)/(1<<20))
	if dBlocks >= 2000 {
		t.Errorf("Python allocated blocks grew by %d over %d requests (want < 2000): a per-request leak of about %.2f blocks",
			dBlocks, n, float64(dBlocks)/n)
	}
	if dGC := p1.GC - p0.GC; dGC >= 1000 {
		t.Errorf("objects tracked by Python's gc grew by %d over %d requests (want < 1000)", dGC, n)
	}
	if p0.Blocks == 0 {
		t.Logf("sys.getallocatedblocks() is 0: pymalloc is off (PYTHONMALLOC=malloc?), so the blocks check says nothing")
	}
	if asanRun() {
		// ASan's quarantine keeps freed memory resident: RSS growth is
		// not a leak signal there (leaks are what ASan itself reports).
		t.Logf("ASAN_OPTIONS is set: RSS growth reported, not asserted")
	} else if dRSS >= 20<<20 {
		t.Errorf("RSS grew by %.1f MiB over %d requests (want < 20 MiB)", float64(dRSS)/(1<<20), n)
	}
}

// asanRun: the suite runs against the AddressSanitizer build, whose
// quarantine keeps freed memory resident, so RSS says nothing of leaks.
func asanRun() bool { return os.Getenv("ASAN_OPTIONS") != "" }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// A whole response of one bytes object of 16 to 256 KiB is written from
// the object; the references Go hands back are dropped by the lane's next
// job, or, when none comes, by a worker woken once they pass 4 MiB
// (wsgi_kept.c, KEPT_WAKE). So after a burst and with the app idle, at most
// about 4 MiB of bodies may stay referenced, and none once more requests
// ran.
func TestBodiesSentByReferenceAreDropped(t *testing.T) {
	c := startCaddy(t, `http://127.0.0.1:{{PORT}} {
	handle /probe {
		python {
			module_wsgi "wsgi_keep:probe"
			working_dir {{APPS}}
		}
	}
	handle {
		python {
			module_wsgi "wsgi_keep:app"
			working_dir {{APPS}}
			threads 4
		}
	}
}
`)
	held := func() int {
		n, err := strconv.Atoi(string(c.get(t, "/probe", 200)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const body = 200 * 1024
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		var bad atomic.Int64
		for i := 0; i < 60; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if status, b, err := c.fetch("GET", "/", nil); err != nil || status != 200 || len(b) != body {
					bad.Add(1)
				}
			}()
		}
		wg.Wait()
		if bad.Load() > 0 {
			t.Fatalf("%d of 60 requests failed", bad.Load())
		}
		time.Sleep(200 * time.Millisecond)
		n := held()
		t.Logf("round %d: %d references held with the app idle", round, n)
		if limit := 4<<20/body + 2; n > limit {
			t.Errorf("round %d: %d references (%d KiB) still held with the app idle, want at most %d", round, n, n*body>>10, limit)
		}
	}
	// A request to the app drops what its lane kept.
	c.get(t, "/", 200)
	if n := held(); n > 1 {
		t.Errorf("%d references held after one more request, want at most 1 (that request's own)", n)
	}
}
