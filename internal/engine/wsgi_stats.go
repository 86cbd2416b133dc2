package engine

// #include "wsgi_lanes.h"
import "C"

import (
	"sync"
	"time"
)

// A WSGI pool's part in Stats. Nothing is counted per request beyond the
// slot's track pointer: which requests run and which wait is read from
// the slots when asked (metrics scrape, admin view), the way the timeout
// watcher reads them, and each running request's Inflight gets its start.

// probing guards the pool's lane against probes once close frees it.
type probing struct {
	mu      sync.Mutex
	closed  bool
	threads int
}

// observe has the pool report to s (before it serves).
func (p *pool) observe(s *Stats, threads int) {
	if s == nil {
		return
	}
	p.stats, p.probing.threads = s, threads
	s.addProber(p)
}

func (p *pool) unobserve() {
	if p.stats != nil {
		p.stats.removeProber(p)
	}
}

// probe counts the pool's threads, and its requests running and waiting
// (those still reading a small body before they queue count as waiting),
// and stamps the running ones' Inflight with when they started.
func (p *pool) probe(now time.Time) (threads, busy, queued int) {
	p.probing.mu.Lock()
	defer p.probing.mu.Unlock()
	if p.probing.closed {
		return 0, 0, 0
	}
	tp := slots.table.Load()
	if tp == nil {
		return p.probing.threads, 0, 0
	}
	nowNs := int64(C.caddysnake_now_ns())
	for _, s := range *tp {
		if s == nil || s.pool != p {
			continue
		}
		mark := s.run.Load()
		if mark == 0 {
			continue
		}
		since := p.runningSince(s, mark)
		if since == 0 {
			queued++
			continue
		}
		busy++
		if t := s.track.Load(); t != nil && s.run.Load() == mark {
			t.Started.CompareAndSwap(0, now.Add(-time.Duration(nowNs-since)).UnixNano())
		}
	}
	return p.probing.threads, busy, queued
}
