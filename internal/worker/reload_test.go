package worker

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// livePids is the pids of the workers in the slots.
func livePids(p *Pool) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for _, sl := range p.slots {
		if sl.cur != nil {
			pids = append(pids, sl.cur.pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// Reload replaces every worker; a request in flight finishes on its old
// worker, which then exits.
func TestPoolReload(t *testing.T) {
	p, logs := startFake(t, 2)
	old := livePids(p)
	slow := make(chan error, 1)
	rc := newRecorder()
	go func() { slow <- p.Serve(request("/sleep?500", nil), rc) }()
	time.Sleep(100 * time.Millisecond)
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	now := livePids(p)
	if len(now) != 2 || slices.Contains(now, old[0]) || slices.Contains(now, old[1]) {
		t.Fatalf("workers %v after a reload, were %v: want 2 new ones", now, old)
	}
	if err := <-slow; err != nil || rc.Code != 200 {
		t.Fatalf("the request in flight during the reload: %v, status %d", err, rc.Code)
	}
	for _, pid := range old {
		waitGone(t, strconv.Itoa(pid))
	}
	if logs.FilterMessageSnippet("died").Len() != 0 {
		t.Fatal("a reloaded worker was logged as a crash")
	}
}

// A reload whose workers fail to load leaves the old ones serving,
// returns the error and does not try again on its own; the next one
// works.
func TestPoolReloadFailsKeepsOld(t *testing.T) {
	fail := filepath.Join(t.TempDir(), "fail")
	p, logs := startFake(t, 2, failFileEnv+"="+fail)
	old := livePids(p)
	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := p.Reload()
	if err == nil || !strings.Contains(err.Error(), "told to fail") {
		t.Fatalf("Reload: %v, want the workers' load error", err)
	}
	if now := livePids(p); !slices.Equal(now, old) {
		t.Fatalf("workers %v after a failed reload, want the old %v", now, old)
	}
	if pid := pidOf(t, p); pid == "" {
		t.Fatal("nothing serves after a failed reload")
	}
	time.Sleep(300 * time.Millisecond)
	p.mu.Lock()
	n := len(p.all)
	p.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d processes after a failed reload, want the 2 old ones", n)
	}
	if l := logs.FilterMessageSnippet("failed to start").Len(); l != 0 {
		t.Fatalf("the failed reload was logged or retried by the pool (%d lines)", l)
	}
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if now := livePids(p); slices.Contains(now, old[0]) || slices.Contains(now, old[1]) {
		t.Fatalf("workers %v after the fix, were %v", now, old)
	}
}

// A closing pool reloads nothing.
func TestPoolReloadClosed(t *testing.T) {
	p, _ := startFake(t, 1)
	p.Close()
	if err := p.Reload(); !errors.Is(err, engine.ErrStopped) {
		t.Fatalf("Reload after Close: %v, want ErrStopped", err)
	}
}
