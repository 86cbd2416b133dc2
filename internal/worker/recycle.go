package worker

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Recycling: a worker is replaced, without failing a request, once it
// served MaxRequests (plus jitter), once its RSS passed MaxMemory, or
// once a request in it is stuck (past request_timeout and the engine's
// own grace). The replacement is started and ready first; then the slot
// points to it, so the old worker gets no new stream; the old one is told
// to drain (FrameShutdown): it finishes its streams in flight and exits,
// or is killed after the bound.

// FrameRecycle (worker to Caddy), stream 0, payload: why the worker asks
// to be replaced (a WSGI thread stuck in C was written off: it may hold
// memory, locks or the GIL for good).
const FrameRecycle = 50

// escalateGrace is how long past request_timeout a stream may run before
// its worker is replaced: the engine's own timeout (its interrupt, its
// grace, its answer) had that long to free it.
const escalateGrace = 5 * time.Second

// monitorTick is how often the memory and stuck-stream checks run.
const monitorTick = time.Second

// recycleRetry is how long a worker whose replacement failed to start
// keeps serving before the next try.
const recycleRetry = 10 * time.Second

// requestLimit is the number of streams pr may open before it is
// recycled: MaxRequests plus up to MaxRequestsJitter (0: no limit), so
// that workers started together are not all replaced at once.
func (p *Pool) requestLimit() int64 {
	if p.opts.MaxRequests <= 0 {
		return 0
	}
	n := int64(p.opts.MaxRequests)
	if j := p.opts.MaxRequestsJitter; j > 0 {
		n += rand.Int64N(int64(j) + 1)
	}
	return n
}

// countStream counts a stream pr opened against its request limit.
func (pr *proc) countStream() {
	if n := pr.served.Add(1); pr.maxServed > 0 && n == pr.maxServed {
		pr.pool.recycle(pr, "max_requests", zap.Int64("requests", n))
	}
}

// recycle replaces old (once): a new worker in its slot, ready first, then
// old drains. If the new one fails to start, old keeps serving and may be
// recycled again after recycleRetry.
func (p *Pool) recycle(old *proc, reason string, fields ...zap.Field) {
	if !old.recycling.CompareAndSwap(false, true) {
		return
	}
	fields = append([]zap.Field{zap.String("app", p.name), zap.Int("pid", old.pid), zap.String("reason", reason)}, fields...)
	go func() {
		sl := old.slot
		p.logger.Info("python: recycling a worker process: starting its replacement", fields...)
		nw, err := p.spawn(sl)
		if err == nil {
			err = p.waitReady(nw, nil)
		}
		if err != nil {
			if nw != nil {
				<-nw.gone
			}
			p.mu.Lock()
			closing := p.closing
			p.mu.Unlock()
			if closing {
				return // the pool drains old with the rest
			}
			p.logger.Error("python: the replacement of a worker process failed to start; the old one keeps serving",
				append(fields, zap.Error(err))...)
			time.AfterFunc(recycleRetry, func() { old.recycling.Store(false) })
			return
		}
		p.mu.Lock()
		switch {
		case p.closing:
			p.mu.Unlock()
			nw.abandon() // no stream reached it
			return
		case !nw.isReady.Load():
			p.mu.Unlock()
			p.logger.Error("python: the replacement of a worker process failed to start; the old one keeps serving",
				append(fields, zap.Error(errDiedOnceReady))...)
			time.AfterFunc(recycleRetry, func() { old.recycling.Store(false) })
			return
		case sl.cur == nil:
			// old died meanwhile: nw takes the slot before the restart's
			// worker does (which then stands down).
			sl.cur, sl.failures = nw, 0
			p.mu.Unlock()
			p.countRestart()
			return
		case sl.cur != old:
			p.mu.Unlock()
			nw.shutdown(p.drainBound)
			return
		}
		sl.cur = nw
		p.mu.Unlock()
		p.countRestart()
		p.logger.Info("python: worker process recycled: the old one drains its requests in flight",
			append(fields, zap.Int("new_pid", nw.pid))...)
		old.shutdown(p.recycleBound(reason))
	}()
}

// recycleBound bounds an old worker's drain: its streams run at most
// request_timeout (plus escalateGrace), and an ASGI app's shutdown its own
// timeout. A worker replaced for a stuck request gets request_timeout
// and its grace only: a stream still running then is stuck too (the GIL
// held by the stuck call, or the event loop stuck in it, which also rules
// out the lifespan shutdown), and fails when the worker is killed.
func (p *Pool) recycleBound(reason string) time.Duration {
	switch {
	case p.stuckAfter == 0:
		return p.drainBound
	case reason == "request_timeout":
		return p.stuckAfter
	}
	return p.stuckAfter + p.shutdownTimeout + killGrace
}

// monitor checks every serving worker's RSS and oldest stream each
// monitorTick, until the pool closes.
func (p *Pool) monitor() {
	t := time.NewTicker(monitorTick)
	defer t.Stop()
	for {
		select {
		case <-p.closed:
			return
		case <-t.C:
		}
		p.mu.Lock()
		procs := make([]*proc, 0, len(p.slots))
		for _, sl := range p.slots {
			if pr := sl.cur; pr != nil && pr.isReady.Load() && !pr.recycling.Load() {
				procs = append(procs, pr)
			}
		}
		p.mu.Unlock()
		now := time.Now()
		for _, pr := range procs {
			if max := p.opts.MaxMemory; max > 0 {
				if rss, ok := rssOf(pr.pid); ok && rss > max {
					p.recycle(pr, "max_memory", zap.Int64("rss", rss), zap.Int64("max_memory", max))
					continue
				}
			}
			if p.stuckAfter > 0 {
				if age := pr.oldestStream(now); age > p.stuckAfter {
					p.recycle(pr, "request_timeout", zap.Duration("stuck_for", age.Round(time.Second)),
						zap.String("note", "a request ran past request_timeout and the engine's grace (stuck in C?); "+
							"its other requests drain within request_timeout, then the worker is killed"))
				}
			}
		}
	}
}

// oldestStream is how long pr's oldest stream in flight under
// request_timeout has run: every WSGI stream (its timeout counts to the
// response's end), an ASGI one until its response streams (as in
// process, a streamed response and a WebSocket are exempt).
func (pr *proc) oldestStream(now time.Time) time.Duration {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	var oldest time.Duration
	for _, s := range pr.streams {
		if s.streaming.Load() {
			continue
		}
		if d := now.Sub(s.opened); d > oldest {
			oldest = d
		}
	}
	return oldest
}

var pageSize = int64(os.Getpagesize())

// rssOf reads a process's resident set size in bytes (Linux /proc).
func rssOf(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * pageSize, true
}
