package worker

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
)

// Options says how a Pool runs its workers.
type Options struct {
	// Processes is how many workers serve the app (at least 1).
	Processes int
	// Exe and Args start a worker; default: this executable, python-worker.
	Exe  string
	Args []string
	// Env is added to the workers' environment (tests).
	Env []string
	// StopBound is how long a drain may last before Abandon (Caddy's stop
	// bound); Close kills a worker that outlives it plus the app's
	// shutdown timeout and killGrace.
	StopBound time.Duration
	// Exiting says whether Caddy is on its way out: Close then waits for
	// the workers, which would otherwise die with it undrained.
	Exiting func() bool

	// Recycling (recycle.go): replace a worker after MaxRequests streams
	// plus up to MaxRequestsJitter, or once its RSS passed MaxMemory bytes
	// (0: never).
	MaxRequests       int
	MaxRequestsJitter int
	MaxMemory         int64
	// Credential, if set, is the user and group the workers run as.
	Credential *syscall.Credential
	// MemoryLimit, if > 0, caps each worker's address space beyond its
	// runtime's base (memlimit.go).
	MemoryLimit int64
	// Stats, if set, counts restarts and crashes (admin.go).
	Stats *engine.Stats
}

// Restart rules: a worker that dies is started again after a back-off
// that doubles from backoffMin to backoffMax, reset once a worker lived
// backoffReset; a slot whose worker fails to reach FrameReady maxFailures
// times in a row is given up.
const (
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 10 * time.Second
	backoffReset = 30 * time.Second
	maxFailures  = 5
)

// Pool is an engine.App whose requests are served by worker processes.
type Pool struct {
	name        string // the app's target, for logs
	threads     int    // Python threads a worker runs, all interpreters (memlimit.go's estimate)
	wsgiThreads int    // WSGI threads of one interpreter, 0 for ASGI (Threads: metrics, admin)
	config      string // EncodeConfig's
	opts        Options
	logger      *zap.Logger
	asgi        bool
	bodyTimeout time.Duration
	readyBound  time.Duration
	drainBound  time.Duration
	// stuckAfter: a stream older than this (request_timeout plus
	// escalateGrace) has its worker replaced; 0: request_timeout is off.
	stuckAfter      time.Duration
	shutdownTimeout time.Duration

	mu      sync.Mutex
	slots   []*slot
	all     map[*proc]struct{} // every process not reaped yet
	started bool
	closing bool
	closed  chan struct{}

	next atomic.Uint32
}

// slot is one of the Processes places: its serving worker, if any (under
// Pool.mu), and the restart state (only its restart goroutine, one at a
// time, touches it).
type slot struct {
	cur      *proc
	backoff  time.Duration
	failures int
}

// Start runs opts.Processes workers for the app cfg describes and returns
// once all of them loaded it (or the first that did not, as an error).
func Start(cfg engine.Config, opts Options, logger *zap.Logger) (engine.App, []zap.Field, error) {
	if opts.Processes < 1 {
		return nil, nil, fmt.Errorf("worker pool: %d processes", opts.Processes)
	}
	enc, err := EncodeConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	if opts.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, fmt.Errorf("python: processes: cannot find caddy's own executable: %w", err)
		}
		opts.Exe, opts.Args = exe, []string{"python-worker"}
	}
	if opts.Exiting == nil {
		opts.Exiting = func() bool { return false }
	}
	p := &Pool{config: enc, opts: opts, logger: logger, all: map[*proc]struct{}{}, closed: make(chan struct{})}
	// A worker loads the app as engine.Load does in process: the ASGI
	// startup timeout bounds its lifespan, an import has no bound there;
	// here one generous bound keeps a hung worker from hanging Caddy.
	p.readyBound = 2 * time.Minute
	if o := cfg.ASGI; o != nil {
		p.name, p.asgi, p.bodyTimeout = o.Target, true, o.BodyTimeout
		p.readyBound = max(p.readyBound, o.StartupTimeout+time.Minute)
		p.drainBound, p.shutdownTimeout = o.ShutdownTimeout, o.ShutdownTimeout
		if o.RequestTimeout > 0 {
			p.stuckAfter = o.RequestTimeout + escalateGrace
		}
	} else {
		p.name, p.bodyTimeout, p.threads = cfg.WSGI.Target, cfg.WSGI.BodyTimeout, cfg.WSGI.Threads
		p.wsgiThreads = cfg.WSGI.Threads
		if cfg.WSGI.Timeout > 0 {
			p.stuckAfter = cfg.WSGI.Timeout + escalateGrace
		}
	}
	p.drainBound += opts.StopBound + killGrace
	p.threads = max(p.threads, 1) * max(cfg.Interpreters, 1)

	procs := make([]*proc, opts.Processes)
	errs := make([]error, opts.Processes)
	for i := range procs {
		sl := &slot{}
		p.slots = append(p.slots, sl)
		pr, err := p.spawn(sl)
		if err != nil {
			errs[i] = err
			break
		}
		procs[i] = pr
		p.mu.Lock()
		sl.cur = pr
		p.mu.Unlock()
	}
	var wg sync.WaitGroup
	for i, pr := range procs {
		if pr == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.waitReady(pr, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, pr := range procs {
			if pr != nil {
				pr.retired.Store(true)
				_ = pr.cmd.Process.Kill()
				<-pr.gone
			}
		}
		return nil, nil, firstError(errs)
	}
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	if opts.MaxMemory > 0 || p.stuckAfter > 0 {
		go p.monitor()
	}
	pids := make([]int, len(procs))
	for i, pr := range procs {
		pids[i] = pr.pid
	}
	fields := append([]zap.Field{zap.Int("processes", opts.Processes), zap.Ints("pids", pids)}, procs[0].fields...)
	return p, fields, nil
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// spawn starts a worker for sl and keeps track of it until it is reaped.
func (p *Pool) spawn(sl *slot) (*proc, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return nil, errClosing
	}
	pr, err := spawn(p, sl)
	if err != nil {
		return nil, fmt.Errorf("python: processes: %w", err)
	}
	p.all[pr] = struct{}{}
	return pr, nil
}

// errClosing: the pool closed while a new worker was starting.
var errClosing = errors.New("python: the app is closing")

// waitReady waits for pr's FrameReady, or until stop is closed (nil: no
// stop); on failure pr is killed (and reaped by its read loop).
func (p *Pool) waitReady(pr *proc, stop <-chan struct{}) error {
	t := time.NewTimer(p.readyBound)
	defer t.Stop()
	var err error
	select {
	case err = <-pr.ready:
	case <-t.C:
		err = fmt.Errorf("python: worker process %d of %q not ready after %v", pr.pid, p.name, p.readyBound)
	case <-stop:
		err = errClosing
	}
	if err != nil {
		pr.retired.Store(true)
		_ = pr.cmd.Process.Kill()
		if err != errClosing {
			err = p.explainStartFailure(pr, err)
		}
	}
	return err
}

// exited runs once a worker was reaped: its streams failed already. A
// worker that was serving is restarted, unless the pool is closing.
func (p *Pool) exited(pr *proc) {
	p.mu.Lock()
	delete(p.all, pr)
	sl := pr.slot
	serving := sl.cur == pr
	if serving {
		sl.cur = nil
	}
	restart := serving && p.started && !p.closing
	p.mu.Unlock()
	fields := append([]zap.Field{zap.String("app", p.name)}, pr.exitFields()...)
	if pr.retired.Load() {
		p.logger.Debug("python: worker process ended", fields...)
		return
	}
	if !serving {
		return // a start that failed: restart or Start logs it
	}
	if st := p.opts.Stats; st != nil {
		st.Crashes.Add(1)
	}
	p.logger.Error("python: worker process died; its requests in flight failed", fields...)
	if restart {
		go p.restart(sl, time.Since(pr.readyAt))
	}
}

// errDiedOnceReady: a new worker was ready, then died before it took its
// slot. Its exit found the slot not its own, so no restart followed: the
// code that was to hand it the slot must (every place that sets sl.cur to
// a new worker checks isReady under p.mu: the read loop clears it before
// the exit takes p.mu).
var errDiedOnceReady = errors.New("python: the new worker process died once ready, before it took its place")

// restart starts a new worker in sl after the back-off, until one is
// ready, the pool closes, or maxFailures starts in a row failed.
func (p *Pool) restart(sl *slot, lived time.Duration) {
	if lived >= backoffReset {
		sl.backoff = 0
	}
	for {
		sl.backoff = min(max(2*sl.backoff, backoffMin), backoffMax)
		t := time.NewTimer(sl.backoff)
		select {
		case <-t.C:
		case <-p.closed:
			t.Stop()
			return
		}
		pr, err := p.spawn(sl)
		if err == nil {
			err = p.waitReady(pr, nil)
		}
		if err == nil {
			p.mu.Lock()
			if p.closing {
				p.mu.Unlock()
				go pr.abandon()
				return
			}
			if sl.cur != nil { // a recycle's replacement took the slot
				p.mu.Unlock()
				go pr.shutdown(p.drainBound)
				return
			}
			if pr.isReady.Load() {
				sl.cur, sl.failures = pr, 0
				p.mu.Unlock()
				p.countRestart()
				p.logger.Info("python: worker process restarted", zap.String("app", p.name),
					zap.Int("pid", pr.pid), zap.Duration("backoff", sl.backoff))
				return
			}
			p.mu.Unlock()
			err = errDiedOnceReady
		}
		if pr != nil {
			<-pr.gone
		}
		sl.failures++
		if sl.failures >= maxFailures {
			p.mu.Lock()
			live := p.liveLocked()
			p.mu.Unlock()
			p.logger.Error("python: giving up on a worker process that failed to start; restart or reload caddy once the app is fixed",
				zap.String("app", p.name), zap.Int("failures", sl.failures), zap.Int("live_processes", live),
				zap.Int("processes", len(p.slots)), zap.Error(err))
			return
		}
		p.logger.Error("python: worker process failed to start; trying again", zap.String("app", p.name),
			zap.Int("failures", sl.failures), zap.Error(err))
	}
}

func (p *Pool) liveLocked() int {
	n := 0
	for _, sl := range p.slots {
		if sl.cur != nil {
			n++
		}
	}
	return n
}

// pick returns the live worker with the fewest streams in flight; ties
// rotate. nil: none is live.
func (p *Pool) pick() *proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return nil // draining: no new stream, as in process
	}
	n := len(p.slots)
	start := int(p.next.Add(1)) % n
	var best *proc
	var least int64
	for k := 0; k < n; k++ {
		pr := p.slots[(start+k)%n].cur
		if pr == nil || !pr.isReady.Load() {
			continue
		}
		if b := pr.inflight.Load(); best == nil || b < least {
			best, least = pr, b
		}
	}
	return best
}

// Serve hands r to the least busy worker.
func (p *Pool) Serve(r *engine.Request, w engine.ResponseWriter) error {
	for range 3 {
		pr := p.pick()
		if pr == nil {
			break
		}
		if r.Track != nil {
			r.Track.Pid.Store(int64(pr.pid))
		}
		err := pr.serve(r, w, p.bodyTimeout)
		if err != errDeadBeforeOpen {
			return err
		}
	}
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if closing {
		return &engine.Error{Status: http.StatusServiceUnavailable, Err: engine.ErrStopped}
	}
	return &engine.Error{Status: http.StatusServiceUnavailable,
		Err: fmt.Errorf("python: no worker process of %q is running (restarting, or given up: see the log)", p.name)}
}

// Close drains every worker: each finishes its streams and exits; one that
// outlives the drain bound is killed. Caddy waits for it only on its way
// out, as in process.
func (p *Pool) Close() {
	procs := p.beginClose()
	if procs == nil {
		// Abandon came first (the stop bound and the server's grace
		// period ran out together): on the way out, still wait for its
		// workers, or Caddy exits under their lifespan shutdown.
		if p.opts.Exiting() {
			p.each(p.live(), func(pr *proc) { <-pr.gone })()
		}
		return
	}
	wait := p.each(procs, func(pr *proc) { pr.shutdown(p.drainBound) })
	if p.opts.Exiting() {
		wait()
	} else {
		go wait()
	}
}

// Abandon has every worker give up on its streams; one that does not exit
// within killGrace is killed.
func (p *Pool) Abandon() {
	p.beginClose()
	p.each(p.live(), (*proc).abandon)()
}

// live is the workers the pool has now.
func (p *Pool) live() []*proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	procs := make([]*proc, 0, len(p.all))
	for pr := range p.all {
		procs = append(procs, pr)
	}
	return procs
}

// beginClose marks the pool closing and returns its workers; nil if it was
// closing already.
func (p *Pool) beginClose() []*proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return nil
	}
	p.closing = true
	close(p.closed)
	procs := make([]*proc, 0, len(p.all))
	for pr := range p.all {
		procs = append(procs, pr)
	}
	return procs
}

// each runs f on every proc at once; the function returned waits for them.
func (p *Pool) each(procs []*proc, f func(*proc)) func() {
	var wg sync.WaitGroup
	for _, pr := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(pr)
		}()
	}
	return wg.Wait
}
