package engine

// #include "wsgi_lanes.h"
// #include <stdlib.h>
import "C"

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
)

// request_timeout for WSGI, and Abandon for a bounded stop.
//
// One watcher goroutine per pool scans its running requests a few times a
// second; a request only stores when it started (one atomic store at its
// start and one at its end), so a fast request pays no timer and no
// goroutine. A request over request_timeout gets caddysnake.RequestTimeout
// raised in its worker thread (PyThreadState_SetAsyncExc, under the
// interpreter's GIL, with the Python stack it was in kept for the log). A
// pure-Python loop unwinds at once; a thread blocked inside C (a socket
// read, Event.wait(), even time.sleep) sees the exception only when the
// call returns. So after timeoutGrace the request goroutine stops waiting:
// it writes the job off (caddysnake_lane_abandon), answers, and a new
// worker thread takes the lost one's place. The lost thread, if it ever
// comes back, finds its job marked abandoned: its writes fail, it drops
// the job's Python references and leaves; its job and slot are never
// reused (a few hundred KiB left behind per thread written off).

const (
	// watchTick is how often the watcher scans: a timeout fires at most
	// this late.
	watchTick = 250 * time.Millisecond
	// timeoutGrace is how long a thread has, after RequestTimeout was
	// raised in it, to unwind before it is written off.
	timeoutGrace = time.Second
)

// timing is a slot's part in timeouts.
type timing struct {
	// run is the handle of the request using the slot, 0 if none: set by
	// the request goroutine before it queues its job, read by the watcher
	// (which asks C when the job started).
	run atomic.Uint64
	// writeOff is the run the watcher gave up on; the request goroutine
	// sees it in collect, once nudged.
	writeOff atomic.Uint64
	// jobMu keeps the job alive while an interrupt reads it (unregister
	// frees it under jobMu).
	jobMu sync.Mutex
	// lost: the slot's job was written off; the slot is never reused.
	// Request goroutine only.
	lost bool

	// The watcher's own: the run it saw, and when it interrupted that run
	// (zero: not yet).
	seen          uint64
	interruptedAt time.Time
}

// watchState is a pool's watcher.
type watchState struct {
	abandon     chan struct{} // closed by Abandon
	abandonOnce sync.Once
	abandoned   atomic.Bool   // requests now answered 503, not 504
	graceOver   chan struct{} // closed once abandoned requests were written off
	stop        chan struct{}
	done        chan struct{}
	raising     sync.WaitGroup // interrupts under way (they use the interpreter)
}

func (p *pool) startWatch() {
	p.watch.abandon = make(chan struct{})
	p.watch.graceOver = make(chan struct{})
	p.watch.stop = make(chan struct{})
	p.watch.done = make(chan struct{})
	go p.watchLoop()
}

// stopWatch ends the watcher (close, once no request is left) and waits
// for the interrupts it started, which use the interpreter close ends.
func (p *pool) stopWatch() {
	close(p.watch.stop)
	<-p.watch.done
	p.watch.raising.Wait()
}

func (p *pool) watchLoop() {
	defer close(p.watch.done)
	var tick <-chan time.Time
	newTicker := func() {
		t := time.NewTicker(watchTick)
		tick = t.C
		go func() { <-p.watch.done; t.Stop() }()
	}
	if p.timeout > 0 {
		newTicker()
	}
	abandon := p.watch.abandon
	var writeOffAt time.Time // abandoned: when the grace is over
	for {
		select {
		case <-tick:
		case <-abandon:
			abandon = nil
			writeOffAt = time.Now().Add(timeoutGrace)
			if tick == nil {
				newTicker()
			}
		case <-p.watch.stop:
			return
		}
		now := time.Now()
		abandoning := !writeOffAt.IsZero()
		running := p.scan(now, abandoning)
		if abandoning && (running == 0 || now.After(writeOffAt)) {
			select {
			case <-p.watch.graceOver:
			default:
				close(p.watch.graceOver)
			}
		}
	}
}

// scan interrupts the requests that ran too long (all of them once
// abandoning) and writes off those whose grace is over. Returns how many
// requests hold a slot (queued or running).
func (p *pool) scan(now time.Time, abandoning bool) (running int) {
	tp := slots.table.Load()
	if tp == nil {
		return 0
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
		running++
		if s.seen != mark {
			s.seen, s.interruptedAt = mark, time.Time{}
		}
		if s.interruptedAt.IsZero() {
			since := p.runningSince(s, mark)
			if since != 0 && (abandoning || (p.timeout > 0 && time.Duration(nowNs-since) >= p.timeout)) {
				s.interruptedAt = now
				p.interrupt(s, mark)
			}
			continue
		}
		if now.Sub(s.interruptedAt) >= timeoutGrace {
			// Every tick until it is over: collect may have to wait for a
			// write in progress (writeOff).
			s.writeOff.Store(mark)
			nudge(s.news) // collect acts on it
		}
	}
	return running
}

// runningSince is when s's job started running request mark (C's clock),
// or 0. Skipped (0) while an interrupt holds the job: the next tick sees it.
func (p *pool) runningSince(s *slot, mark uint64) int64 {
	if !s.jobMu.TryLock() {
		return 0
	}
	defer s.jobMu.Unlock()
	if s.job == nil {
		return 0
	}
	return int64(C.caddysnake_job_running_since(s.job, C.uintptr_t(mark)))
}

// interrupt raises RequestTimeout in the thread running s's request mark,
// under its interpreter's GIL, on the interpreter's owner thread. Not on
// the watcher: a thread that never releases the GIL would stop it.
func (p *pool) interrupt(s *slot, mark uint64) {
	h := uintptr(mark)
	p.watch.raising.Add(1)
	go func() {
		defer p.watch.raising.Done()
		p.interp.do(func() {
			s.jobMu.Lock()
			defer s.jobMu.Unlock()
			if s.job != nil {
				// C checks that the job still runs request h.
				C.caddysnake_job_interrupt(p.interp.ci, s.job, C.uintptr_t(h))
			}
		})
	}()
}

// writeOff gives up on s's running job for good (collect, on the request
// goroutine, after the watcher said so): false if the job finished
// meanwhile. The lost thread is counted out of p.threads and replaced.
func (req *wsgiRequest) writeOff(s *slot) bool {
	p := req.app.pool
	// Callbacks stop finding the request first; one that already writes to
	// the client (a long sendfile to a client that stopped reading) keeps
	// it, since the handler must not return under it: the write is made to
	// fail instead, and its thread comes back with RequestTimeout pending.
	s.cur.Store(nil)
	if req.writing.Load() > 0 {
		// A read of the body is cut the same way (a thread waiting for
		// bytes a client trickles); the body reader then stops re-arming
		// its deadline. The next tick tries again until the call left.
		s.cur.Store(req)
		req.cut.Store(true)
		_ = req.w.SetWriteDeadline(time.Now())
		_ = req.w.SetReadDeadline(time.Now())
		return false
	}
	var spawn C.int
	var stack *C.char
	if C.caddysnake_lane_abandon(p.lane, s.job, &spawn, &stack) == 0 {
		s.cur.Store(req)
		return false
	}
	s.lost = true
	req.lost = true
	req.stack = takeCString(stack)
	p.spawn(int(spawn))
	p.threads.Done() // the lost thread's goroutine will not (lane_work returns 1)
	if f := threadLost.Load(); f != nil {
		(*f)()
	}
	return true
}

// threadLost, if set, runs each time a thread is written off: a worker
// process then asks Caddy to replace it (the lost thread may hold memory,
// locks or the GIL for good).
var threadLost atomic.Pointer[func()]

// OnThreadLost sets what runs when a WSGI thread is written off (once per
// process: the worker's).
func OnThreadLost(f func()) { threadLost.Store(&f) }

// interrupted reads, once the job finished, whether RequestTimeout was
// raised in it, and the stack it was stuck in.
func (req *wsgiRequest) interruptedJob(s *slot) {
	var stack *C.char
	if C.caddysnake_job_interrupted(s.job, &stack) != 0 {
		req.interrupted = true
		req.stack = takeCString(stack)
	}
}

func takeCString(s *C.char) string {
	if s == nil {
		return ""
	}
	defer C.free(unsafe.Pointer(s))
	return C.GoString(s)
}

// Abandon is for stop's deadline: RequestTimeout is raised in every
// running request's thread; after timeoutGrace, every request still in
// flight is written off and returns from Serve at once (503 if nothing was
// sent, else aborted), and requests still queued get 503. Returns once the
// grace is over. Close's cleanup does not wait for threads written off.
func (a *WSGIApp) Abandon() {
	p := a.pool
	p.watch.abandonOnce.Do(func() {
		p.watch.abandoned.Store(true)
		close(p.watch.abandon)
	})
	select {
	case <-p.watch.graceOver:
	case <-p.watch.done: // closed meanwhile: nothing was left
	}
}

// timedOut answers a request that ran over request_timeout (or was
// abandoned at stop): logged with the stack it was stuck in; 504 (503 when
// abandoned) if nothing was sent, the connection aborted otherwise. An app
// that caught RequestTimeout and still finished keeps its response.
func (a *WSGIApp) timedOut(req *wsgiRequest, rc int) error {
	abandoned := a.pool.watch.abandoned.Load()
	status, msg := http.StatusGatewayTimeout, "python: request ran over request_timeout; RequestTimeout was raised in its thread"
	if abandoned {
		status, msg = http.StatusServiceUnavailable, "python: request still running at stop's deadline; RequestTimeout was raised in its thread"
	}
	if req.lost {
		msg += ", which did not come back within " + timeoutGrace.String() + " (blocked outside Python): it was written off and replaced"
	}
	stack := req.stack
	if stack == "" {
		stack = "(unknown: the interpreter did not get to run the interrupt)"
	}
	a.logger.Error(msg, zap.String("app", a.target), zap.String("method", req.r.Method),
		zap.String("path", req.r.Path), zap.Duration("request_timeout", a.opts.Timeout),
		zap.String("python_stack", stack))
	// A request written off is left to the garbage collector, not reused:
	// its thread is still out. No callback of that thread is inside it
	// (writeOff waits for reads and writes to leave), and none finds it
	// any more.
	lost, headersSent := req.lost, req.headersSent
	if lost && req.r.ProtoMajor == 1 && !headersSent {
		req.w.Header().Set("Connection", "close")
	}
	if !lost {
		*req = wsgiRequest{}
		requestPool.Put(req)
	}
	switch {
	case !lost && (rc == wsgiOK || rc == wsgiClientGone):
		return nil
	case headersSent:
		return ErrAbort
	}
	return statusError(status, errors.New(msg))
}
