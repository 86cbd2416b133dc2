package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// admin sends a request to a path of Caddy's admin endpoint.
func (c *caddy) admin(t *testing.T, method, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", c.adminPort, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// serverLabel is the server label every caddysnake_ series carries (the
// Caddy server's name: srv0, ...); scrape leaves it out of its keys.
var serverLabel = regexp.MustCompile(`,server="srv[0-9]+"`)

// scrape reads Caddy's /metrics as "name{labels}" -> value, for the
// caddysnake_ series, without their server label (which it checks is
// there).
func (c *caddy) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	status, b := c.admin(t, "GET", "/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics: %d %s", status, b)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddysnake_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		key := serverLabel.ReplaceAllString(line[:i], "")
		if key == line[:i] {
			t.Fatalf("metrics line %q has no server label", line)
		}
		m[key] = v
	}
	return m
}

// metric is one series' value, failing the test if it is missing.
func metric(t *testing.T, m map[string]float64, series string) float64 {
	t.Helper()
	v, ok := m[series]
	if !ok {
		var names []string
		for k := range m {
			names = append(names, k)
		}
		t.Fatalf("no series %s in /metrics; caddysnake series: %v", series, names)
	}
	return v
}

// slowRequest starts GET path in the background; the channel gets its
// status (or -1).
func slowRequest(c *caddy, path string) <-chan int {
	done := make(chan int, 1)
	go func() {
		status, _, err := c.fetch("GET", path, nil)
		if err != nil {
			status = -1
		}
		done <- status
	}()
	return done
}

// waitFor polls cond every 50ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// The caddysnake_* series count requests by class, a 503 from max_wait,
// and show a busy thread while a slow request runs; they survive a reload.
func TestMetricsCountRequestsBusyAndThreads(t *testing.T) {
	site := pySite("http://127.0.0.1:{{PORT}}", "wsgi_slow:app", "threads 1", "max_wait 200ms", inOneProcess())
	c := startCaddy(t, site)
	const app = `app="wsgi_slow:app"`
	for range 3 {
		c.get(t, "/fast", 200)
	}
	m := c.scrape(t)
	if got := metric(t, m, `caddysnake_requests_total{`+app+`,class="2xx"}`); got != 3 {
		t.Errorf("2xx after 3 requests: %v, want 3", got)
	}
	if got := metric(t, m, `caddysnake_total_threads{`+app+`}`); got != 1 {
		t.Errorf("total_threads: %v, want 1 (threads 1)", got)
	}
	if got := metric(t, m, `caddysnake_busy_threads{`+app+`}`); got != 0 {
		t.Errorf("busy_threads while idle: %v, want 0", got)
	}

	slow := slowRequest(c, "/slow?i=1")
	busy := waitFor(800*time.Millisecond, func() bool {
		return c.scrape(t)[`caddysnake_busy_threads{`+app+`}`] == 1
	})
	if !busy {
		t.Errorf("busy_threads never 1 while a 1s request ran")
	}
	if got := metric(t, c.scrape(t), `caddysnake_requests_in_flight{`+app+`}`); got != 1 {
		t.Errorf("requests_in_flight during the slow request: %v, want 1", got)
	}
	c.get(t, "/fast", http.StatusServiceUnavailable) // the only thread is taken: 503 after max_wait
	if st := <-slow; st != 200 {
		t.Fatalf("slow request: %d, want 200", st)
	}

	m = c.scrape(t)
	for series, want := range map[string]float64{
		`caddysnake_requests_total{` + app + `,class="2xx"}`: 4,
		`caddysnake_requests_total{` + app + `,class="5xx"}`: 1,
		`caddysnake_busy_rejections_total{` + app + `}`:      1,
		`caddysnake_busy_threads{` + app + `}`:               0,
		`caddysnake_requests_in_flight{` + app + `}`:         0,
		`caddysnake_interpreters{` + app + `}`:               1,
	} {
		if got := metric(t, m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if processesMode == 0 {
		// Every request that reached the queue: 4 ran, 1 timed out in it.
		if got := metric(t, m, `caddysnake_queue_wait_seconds_count{`+app+`}`); got != 5 {
			t.Errorf("queue_wait_seconds_count = %v, want 5", got)
		}
		if got := metric(t, m, `caddysnake_queue_wait_seconds_bucket{`+app+`,le="0.1"}`); got < 3 {
			t.Errorf("queue waits under 100ms: %v, want at least 3 (the idle ones)", got)
		}
	} else if got := metric(t, m, `caddysnake_total_workers{`+app+`}`); got != 1 {
		t.Errorf("total_workers = %v, want 1", got)
	}

	// A reload registers the new config's collector without a duplicate
	// registration, and its counts start over with the new app.
	c.reload(t, strings.Replace(site, "max_wait 200ms", "max_wait 300ms", 1))
	c.get(t, "/fast", 200)
	m = c.scrape(t)
	if got := metric(t, m, `caddysnake_requests_total{`+app+`,class="2xx"}`); got != 1 {
		t.Errorf("2xx after a reload and 1 request: %v, want 1", got)
	}
}

// A request over request_timeout is counted as a timeout (and a 5xx); an
// open WebSocket shows in open_websockets until it closes, then counts as
// a 1xx (101 Switching Protocols).
func TestMetricsTimeoutsAndWebSockets(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_stuck:app", "threads 2", "request_timeout 1s")+`
http://127.0.0.1:{{PORT2}} {
	python {
		module_asgi "asgi_ws:app"
		working_dir {{APPS}}
	}
}
`)
	c.get(t, "/loop", http.StatusGatewayTimeout)
	m := c.scrape(t)
	const stuck = `app="wsgi_stuck:app"`
	if got := metric(t, m, `caddysnake_timeouts_total{`+stuck+`,kind="request_timeout"}`); got != 1 {
		t.Errorf("request_timeout count after one 504: %v, want 1", got)
	}
	if got := metric(t, m, `caddysnake_requests_total{`+stuck+`,class="5xx"}`); got != 1 {
		t.Errorf("5xx after one 504: %v, want 1", got)
	}

	const ws = `app="asgi_ws:app"`
	conn, _ := wsDial(t, fmt.Sprintf("ws://127.0.0.1:%d/echo", c.Port2), nil)
	wsEcho(t, conn, websocket.MessageText, []byte("hi"))
	if got := metric(t, c.scrape(t), `caddysnake_open_websockets{`+ws+`}`); got != 1 {
		t.Errorf("open_websockets with one open: %v, want 1", got)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	closed := waitFor(3*time.Second, func() bool {
		m := c.scrape(t)
		return m[`caddysnake_open_websockets{`+ws+`}`] == 0 && m[`caddysnake_requests_total{`+ws+`,class="1xx"}`] == 1
	})
	if !closed {
		t.Errorf("after the WebSocket closed: open_websockets %v, 1xx %v; want 0 and 1",
			c.scrape(t)[`caddysnake_open_websockets{`+ws+`}`], c.scrape(t)[`caddysnake_requests_total{`+ws+`,class="1xx"}`])
	}
}

// A worker that dies unasked counts as a crash, and its replacement as a
// restart; total_workers is back to 2 once it is ready (procSite sets
// processes 2 in both suite modes).
func TestMetricsWorkerCrashAndRestart(t *testing.T) {
	c := startCaddy(t, procSite(t, false))
	const app = `app="wsgi_procs:app"`
	if status, _, err := c.fetch("GET", "/exit", nil); err == nil && status == 200 {
		t.Fatalf("GET /exit answered 200: the worker did not die")
	}
	var m map[string]float64
	ok := waitFor(15*time.Second, func() bool {
		m = c.scrape(t)
		return m[`caddysnake_worker_restarts_total{`+app+`}`] == 1 && m[`caddysnake_total_workers{`+app+`}`] == 2
	})
	if !ok {
		t.Errorf("after a worker died: restarts %v, workers %v; want 1 and 2",
			m[`caddysnake_worker_restarts_total{`+app+`}`], m[`caddysnake_total_workers{`+app+`}`])
	}
	if got := metric(t, m, `caddysnake_worker_crashes_total{`+app+`}`); got != 1 {
		t.Errorf("worker_crashes_total = %v, want 1", got)
	}
}
