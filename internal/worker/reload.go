package worker

import (
	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
)

// Reload replaces every worker with one that loads the app afresh (the
// handler's `watch`, when the app's files changed). All replacements start
// at once and must all be ready before any takes its slot, so the pool
// never serves two versions of the code; then each old worker drains its
// requests in flight, as a recycle does. If one replacement fails to load
// (a syntax error), all are stopped, the old workers keep serving, and the
// load error (its traceback) is returned for the caller to log once: there
// is no retry, the next change tries again. engine.ErrStopped: the pool
// closed meanwhile.
func (p *Pool) Reload() error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return engine.ErrStopped
	}
	slots := append([]*slot(nil), p.slots...)
	p.mu.Unlock()

	news := make([]*proc, len(slots))
	errs := make([]error, len(slots))
	done := make(chan int, len(slots))
	for i, sl := range slots {
		pr, err := p.spawn(sl)
		if err != nil {
			errs[i] = err
			done <- i
			continue
		}
		news[i] = pr
		go func() {
			errs[i] = p.waitReady(pr, p.closed) // a config reload or stop ends it
			done <- i
		}()
	}
	for range slots {
		<-done
	}
	err := firstError(errs)
	p.mu.Lock()
	if p.closing {
		err = engine.ErrStopped // not the app's failure: Caddy reloads or stops
	}
	for _, pr := range news {
		if err == nil && pr != nil && !pr.isReady.Load() {
			err = errDiedOnceReady // its exit restarted nothing: see errDiedOnceReady
		}
	}
	if err != nil {
		p.mu.Unlock()
		for _, pr := range news {
			switch {
			case pr == nil:
			case pr.isReady.Load():
				go pr.shutdown(p.drainBound) // its lifespan shutdown runs
			default:
				<-pr.gone // killed by waitReady
			}
		}
		return err
	}
	olds := make([]*proc, 0, len(slots))
	for i, sl := range slots {
		if old := sl.cur; old != nil {
			old.recycling.Store(true) // the monitor leaves it alone
			olds = append(olds, old)
		}
		// A slot whose worker died (restarting, or given up) is filled
		// too: its restart goroutine stands down once it sees sl.cur.
		sl.cur = news[i]
	}
	p.mu.Unlock()
	pids := make([]int, len(news))
	for i, pr := range news {
		pids[i] = pr.pid
	}
	p.logger.Info("python: app reloaded: new worker processes serve, the old ones drain their requests in flight",
		zap.String("app", p.name), zap.Ints("pids", pids))
	for _, old := range olds {
		go old.shutdown(p.recycleBound("watch"))
	}
	return nil
}
