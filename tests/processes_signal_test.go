package tests

import (
	"syscall"
	"testing"
	"time"
)

// A stop signal sent to Caddy's whole process group (Ctrl-C) or cgroup
// (systemd) reaches its workers too: they leave the drain to Caddy, so a
// request in flight still completes, and no worker outlives Caddy.
func TestProcessesStopSignalToWorkersToo(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_slow:app", "processes 1"))
	c.get(t, "/fast", 200)
	workers := c.workerPids(t)
	if len(workers) != 1 {
		t.Fatalf("%d workers, want 1", len(workers))
	}
	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		status, body, err := c.fetch("GET", "/slow?i=7", nil)
		res <- result{status, string(body), err}
	}()
	time.Sleep(300 * time.Millisecond) // the app sleeps 1 s in it
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		_ = syscall.Kill(workers[0], sig)
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case r := <-res:
		if r.err != nil || r.status != 200 || r.body != "7" {
			t.Fatalf("the request in flight at the stop signal: %d %q %v, want 200 \"7\"", r.status, r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10 s of the stop signal")
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("caddy still runs 10 s after SIGTERM")
	}
	waitPidsGone(t, workers[:1], 5*time.Second, "5 s after Caddy exited")
}
