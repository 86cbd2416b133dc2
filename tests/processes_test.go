package tests

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// processes N: the app served by worker processes (caddy python-worker).

// procSites is the app of tests/apps/{wsgi,asgi}_procs.py with processes 2.
func procSite(t *testing.T, asgi bool, extra ...string) string {
	extra = append([]string{"processes 2"}, extra...)
	if asgi {
		return asgiSite(t, "asgi_procs:app", extra...)
	}
	return pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app", extra...)
}

// workerPids lists the python-worker children of caddy.
// waitPidsGone fails t unless every pid is gone (reaped) within d.
func waitPidsGone(t *testing.T, pids []int, d time.Duration, when string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) != syscall.ESRCH {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d still exists %s", pid, when)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (c *caddy) workerPids(t *testing.T) []int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so from its ')'.
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(c.cmd.Process.Pid) {
			continue
		}
		if cmd, _ := os.ReadFile(d + "/cmdline"); bytes.Contains(cmd, []byte("python-worker")) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestProcessesServe(t *testing.T) {
	for _, asgi := range []bool{false, true} {
		name := "WSGI"
		if asgi {
			name = "ASGI"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := startCaddy(t, procSite(t, asgi))
			workers := c.workerPids(t)
			if len(workers) != 2 {
				t.Fatalf("%d python-worker children of caddy, want 2: %v", len(workers), workers)
			}
			pids := map[string]bool{}
			for i := 0; i < 40 && len(pids) < 2; i++ {
				pids[string(c.get(t, "/pid", 200))] = true
			}
			if len(pids) != 2 {
				t.Fatalf("pids that answered: %v, want 2", pids)
			}
			for p := range pids {
				if p == strconv.Itoa(c.cmd.Process.Pid) {
					t.Fatalf("caddy itself (%s) answered", p)
				}
			}

			body := make([]byte, 1<<20)
			rand.Read(body)
			resp, got := c.do(t, "POST", c.URL("/echo"), bytes.NewReader(body))
			if resp.StatusCode != 200 || !bytes.Equal(got, body) {
				t.Fatalf("1 MiB echo: %d, %d bytes back, equal %v", resp.StatusCode, len(got), bytes.Equal(got, body))
			}

			keptAlive(t, c)

			var want strings.Builder
			for i := 0; i < 100; i++ {
				fmt.Fprintf(&want, "chunk %d\n", i)
			}
			if got := c.get(t, "/stream", 200); string(got) != want.String() {
				t.Fatalf("streamed: %d bytes, want %d", len(got), want.Len())
			}

			c.stop()
			waitPidsGone(t, workers, 5*time.Second, "after caddy stopped")
		})
	}
}

// A worker that dies on a request fails that request only: Caddy stays
// up, the log names the death, and the next 20 requests are served
// within 5 s (by the other worker, then by the restarted one). A fatal
// signal in C (a segfault, abort()) ends the worker by that signal, not
// by Go's exit status 2, and faulthandler's Python stacks (written to the
// stderr Caddy copies) are in the log line that reports it.
func TestProcessesCrash(t *testing.T) {
	noCoreDumps(t)
	for _, tc := range []struct {
		name, path string
		asgi       bool
		fields     map[string]any // of the "worker process died" line
		stacks     []string       // in its python_stacks
	}{
		{"WSGI/exit", "/exit", false, map[string]any{"exit_status": 7.0, "exit": "exit status 7"}, nil},
		{"ASGI/exit", "/exit", true, map[string]any{"exit_status": 7.0, "exit": "exit status 7"}, nil},
		{"WSGI/segv", "/segv", false, map[string]any{"signal": 11.0, "exit": "signal SIGSEGV (segmentation fault)"},
			[]string{"Fatal Python error: Segmentation fault", `wsgi_procs.py", line 23 in app`}},
		{"ASGI/segv", "/segv", true, map[string]any{"signal": 11.0, "exit": "signal SIGSEGV (segmentation fault)"},
			[]string{"Fatal Python error: Segmentation fault", `asgi_procs.py", line 45 in app`}},
		{"WSGI/abort", "/abort", false, map[string]any{"signal": 6.0, "exit": "signal SIGABRT (aborted)"},
			[]string{"Fatal Python error: Aborted", `wsgi_procs.py", line 37 in app`}},
		{"ASGI/abort", "/abort", true, map[string]any{"signal": 6.0, "exit": "signal SIGABRT (aborted)"},
			[]string{"Fatal Python error: Aborted", `asgi_procs.py", line 56 in app`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startCaddy(t, procSite(t, tc.asgi))
			status, _, err := c.fetch("GET", tc.path, nil)
			if err == nil && status == 200 {
				t.Fatalf("GET %s: 200 from a worker that died", tc.path)
			}
			if err == nil && status != 502 {
				t.Fatalf("GET %s: %d, want 502", tc.path, status)
			}
			start := time.Now()
			for i := 0; i < 20; i++ {
				status, _, err := c.fetch("GET", "/pid", nil)
				if err != nil || status != 200 {
					t.Fatalf("request %d after the crash: %d %v", i, status, err)
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("20 requests after the crash took %v", d)
			}
			c.alive(t)
			want := []string{"worker process died", "worker process restarted"}
			if !c.waitLog(5*time.Second, want...) {
				t.Fatalf("log lacks one of %q", want)
			}
			died := logLine(t, c, "worker process died")
			for k, v := range tc.fields {
				if died[k] != v {
					t.Errorf("worker process died: %s = %v, want %v (line: %v)", k, died[k], v, died)
				}
			}
			stacks, _ := died["python_stacks"].(string)
			for _, s := range tc.stacks {
				if !strings.Contains(stacks, s) {
					t.Errorf("worker process died: python_stacks lacks %q:\n%s", s, stacks)
				}
			}
			if tc.stacks == nil && stacks != "" {
				t.Errorf("worker process died: python_stacks for an exit:\n%s", stacks)
			}
			if n := len(c.workerPids(t)); n != 2 {
				t.Fatalf("%d workers after the restart, want 2", n)
			}
		})
	}
}

// noCoreDumps sets RLIMIT_CORE to 0 for the processes the test starts: a
// worker killed by SIGSEGV or SIGABRT would otherwise leave a core file.
func noCoreDumps(t *testing.T) {
	t.Helper()
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		t.Fatalf("RLIMIT_CORE 0: %v", err)
	}
}

// logLine returns the first JSON log line whose message contains msg.
func logLine(t *testing.T, c *caddy, msg string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(c.Log(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		if s, _ := m["msg"].(string); strings.Contains(s, msg) {
			return m
		}
	}
	t.Fatalf("no JSON log line with %q:\n%s", msg, tail(c.Log(), 4000))
	return nil
}

// caddy reload with processes: new workers serve, the old ones go.
func TestProcessesReload(t *testing.T) {
	t.Parallel()
	sites := []string{procSite(t, false), procSite(t, false, "threads 4")}
	c := startCaddy(t, sites[0])
	before := c.workerPids(t)
	// Requests keep coming during the reloads. Tolerated, as in
	// TestReloadUnderLoad: a kept-alive connection the old server closed
	// (EOF, reset) and 503 from the old app once it drains.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served, tolerated atomic.Int64
	bad := make(chan string, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				status, b, err := c.fetch("GET", "/pid", nil)
				switch {
				case err == nil && status == 200 && len(b) > 0:
					served.Add(1)
				case err == nil && status == 503,
					err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
					tolerated.Add(1)
				default:
					select {
					case bad <- fmt.Sprintf("GET /pid: %d %q %v", status, b, err):
					default:
					}
				}
			}
		}()
	}
	for i := 1; i <= 3; i++ {
		c.reload(t, sites[i%2])
		// The new config serves. A kept-alive connection of the old
		// server may still be picked for the first try and closed under
		// it (reset): that one try is retried, as a client would.
		for j := 0; j < 5; j++ {
			status, b, err := c.fetch("GET", "/pid", nil)
			for try := 0; try < 3 && err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)); try++ {
				status, b, err = c.fetch("GET", "/pid", nil)
			}
			if err != nil || status != 200 {
				t.Fatalf("GET /pid after reload %d: %d %q %v", i, status, b, err)
			}
		}
	}
	close(stop)
	wg.Wait()
	close(bad)
	for msg := range bad {
		t.Error(msg)
	}
	t.Logf("during 3 reloads: %d served, %d tolerated", served.Load(), tolerated.Load())
	deadline := time.Now().Add(10 * time.Second)
	waitPidsGone(t, before, time.Until(deadline), "(of the first config) after 3 reloads")
	for {
		n := len(c.workerPids(t))
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers after the reloads, want 2", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestProcessesConfig(t *testing.T) {
	t.Parallel()
	out, err := validate(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app", "processes -1"))
	if err == nil || !strings.Contains(out, "processes") {
		t.Fatalf("processes -1 accepted: %v\n%s", err, out)
	}
}

// Over HTTP/2 (and under handle_path): bodies both ways through the worker.
func TestProcessesHTTP2(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, `https://127.0.0.1:{{PORT}} {
	tls internal
	handle_path /wsgi/* {
		python {
			module_wsgi "wsgi_procs:app"
			working_dir {{APPS}}
			processes 2
		}
	}
	handle_path /asgi/* {
		python {
			module_asgi "asgi_procs:app"
			working_dir {{APPS}}
			processes 2
		}
	}
}
`, siteOpts{tls: true})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	base := "https://" + c.Addr()
	getOnceCertReady(t, client, base+"/wsgi/pid").Body.Close()
	body := make([]byte, 3<<20)
	rand.Read(body)
	for _, prefix := range []string{"/wsgi", "/asgi"} {
		resp, err := client.Post(base+prefix+"/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 || !bytes.Equal(got, body) {
			t.Fatalf("%s/echo over %s: %d, %d of %d bytes back, %v", prefix, resp.Proto, resp.StatusCode, len(got), len(body), err)
		}
	}
}

// keptAlive: requests without a body, and with a small one the app read,
// leave the connection open for the next, as in process.
func keptAlive(t *testing.T, c *caddy) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	reqs := []string{
		"GET /pid HTTP/1.1\r\nHost: %s\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello",
		"GET /pid HTTP/1.1\r\nHost: %s\r\n\r\n",
	}
	for i, req := range reqs {
		if _, err := fmt.Fprintf(conn, req, c.Addr()); err != nil {
			t.Fatalf("request %d on one connection: %v", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d on one connection: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close || len(body) == 0 {
			t.Fatalf("response %d: status %d, Connection: close %v, body %q; want 200 from the app on a connection kept alive",
				i, resp.StatusCode, resp.Close, body)
		}
	}
}
