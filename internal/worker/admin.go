package worker

// What the Caddy module's metrics and admin API read of a pool: its
// workers now, and a restart of all of them on request.

// WorkerInfo is one serving worker process.
type WorkerInfo struct {
	Pid int
	// Ready: it loaded the app and takes requests.
	Ready bool
	// Served: requests it took; InFlight: those not answered yet.
	Served, InFlight int64
	// Recycling: its replacement is being started.
	Recycling bool
}

// Workers lists the pool's serving workers, one per process slot that has
// one (a slot waiting for a restart has none).
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]WorkerInfo, 0, len(p.slots))
	for _, sl := range p.slots {
		if pr := sl.cur; pr != nil {
			out = append(out, WorkerInfo{Pid: pr.pid, Ready: pr.isReady.Load(), Served: pr.served.Load(),
				InFlight: pr.inflight.Load(), Recycling: pr.recycling.Load()})
		}
	}
	return out
}

// Threads is how many threads each interpreter of a worker runs the app
// on (WSGI; 0 for ASGI, which runs an event loop).
func (p *Pool) Threads() int { return p.wsgiThreads }

// Restart recycles every serving worker as max_requests does: each
// replacement starts and is ready first, then the old worker finishes its
// requests in flight and exits. It returns the pids being replaced.
func (p *Pool) Restart() []int {
	p.mu.Lock()
	var olds []*proc
	if !p.closing {
		for _, sl := range p.slots {
			if sl.cur != nil {
				olds = append(olds, sl.cur)
			}
		}
	}
	p.mu.Unlock()
	pids := make([]int, 0, len(olds))
	for _, pr := range olds {
		pids = append(pids, pr.pid)
		p.recycle(pr, "admin restart")
	}
	return pids
}

// countRestart counts a worker started in place of another.
func (p *Pool) countRestart() {
	if st := p.opts.Stats; st != nil {
		st.Restarts.Add(1)
	}
}
