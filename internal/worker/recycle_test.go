package worker

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// pidOf serves /pid; "" if it failed.
func pidOf(t *testing.T, p *Pool) string {
	t.Helper()
	rc := newRecorder()
	if err := p.Serve(request("/pid", nil), rc); err != nil || rc.Code != 200 {
		t.Errorf("GET /pid: %v, status %d", err, rc.Code)
		return ""
	}
	return rc.Body.String()
}

// waitNewPid polls /pid until another pid than old answers (5 s at most).
func waitNewPid(t *testing.T, p *Pool, old string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if pid := pidOf(t, p); pid != old && pid != "" {
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("worker %s still answers 5s later", old)
	return ""
}

// waitGone waits for a process to be reaped (5 s at most).
func waitGone(t *testing.T, pid string) {
	t.Helper()
	n := 0
	for _, c := range pid {
		n = 10*n + int(c-'0')
	}
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(n, 0) != syscall.ESRCH; {
		if time.Now().After(deadline) {
			t.Fatalf("old worker %s still exists", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// After max_requests a new worker serves; the old one's request in flight
// when it was recycled still completes, and the old one exits.
func TestPoolMaxRequests(t *testing.T) {
	p, logs := startFakeWith(t, Options{Processes: 1, MaxRequests: 3})
	first := pidOf(t, p)
	pidOf(t, p)
	slow := make(chan error, 1)
	rc := newRecorder()
	go func() { slow <- p.Serve(request("/sleep?500", nil), rc) }() // the 3rd: recycles
	waitNewPid(t, p, first)
	if err := <-slow; err != nil || rc.Code != 200 {
		t.Fatalf("the request in flight during the recycle: %v, status %d", err, rc.Code)
	}
	waitGone(t, first)
	if n := logs.FilterMessage("python: worker process recycled: the old one drains its requests in flight").Len(); n != 1 {
		t.Fatalf("%d recycle lines, want 1", n)
	}
	if logs.FilterMessage("python: worker process died; its requests in flight failed").Len() != 0 {
		t.Fatal("a recycled worker was logged as a crash")
	}
}

// The jitter adds 0..MaxRequestsJitter to each worker's limit.
func TestPoolRequestLimitJitter(t *testing.T) {
	p := &Pool{opts: Options{MaxRequests: 10, MaxRequestsJitter: 3}}
	seen := map[int64]bool{}
	for range 400 {
		n := p.requestLimit()
		if n < 10 || n > 13 {
			t.Fatalf("limit %d, want 10..13", n)
		}
		seen[n] = true
	}
	if len(seen) != 4 {
		t.Fatalf("limits seen: %v, want all of 10..13", seen)
	}
	if n := (&Pool{}).requestLimit(); n != 0 {
		t.Fatalf("no max_requests: limit %d, want 0", n)
	}
}

// A worker that asks to be replaced (FrameRecycle: it lost a thread) is.
func TestPoolWorkerAsksToBeRecycled(t *testing.T) {
	p, logs := startFakeWith(t, Options{Processes: 1})
	first := pidOf(t, p)
	rc := newRecorder()
	if err := p.Serve(request("/recycle-me", nil), rc); err != nil || rc.Code != 200 {
		t.Fatalf("GET /recycle-me: %v, %d", err, rc.Code)
	}
	waitNewPid(t, p, first)
	waitGone(t, first)
	entries := logs.FilterMessage("python: worker process recycled: the old one drains its requests in flight").All()
	if len(entries) != 1 || !strings.Contains(entries[0].ContextMap()["worker_says"].(string), "told to") {
		t.Fatalf("recycle lines: %+v", entries)
	}
}

// A worker over max_memory (here: any worker, 1 byte) is replaced within
// a monitor tick or two, and the old one exits.
func TestPoolMaxMemory(t *testing.T) {
	p, logs := startFakeWith(t, Options{Processes: 1, MaxMemory: 1})
	first := pidOf(t, p)
	waitNewPid(t, p, first)
	waitGone(t, first)
	entries := logs.FilterMessage("python: worker process recycled: the old one drains its requests in flight").All()
	if len(entries) == 0 || entries[0].ContextMap()["reason"] != "max_memory" || entries[0].ContextMap()["rss"].(int64) < 1<<20 {
		t.Fatalf("recycle lines: %+v", entries)
	}
}
