package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the thread pool, documented on the Handler fields.
const (
	// DefaultThreads: under the GIL only one thread runs Python at a time, so
	// threads exist to overlap waiting (database, upstream HTTP, slow
	// clients); 16 covers typical I/O-bound apps at about 1 MiB of stack and
	// one PyThreadState each.
	DefaultThreads = 16
	// DefaultMaxWait bounds how long a request queues for a free thread
	// before it gets 503: long enough to ride out a burst, short enough that
	// an overloaded app sheds load instead of piling up connections.
	DefaultMaxWait = 30 * time.Second
)

var (
	// ErrBusy: every thread stayed busy for max_wait.
	ErrBusy = errors.New("python: all threads are busy (raise threads or max_wait)")
	// ErrStopped: the app is being replaced or shut down.
	ErrStopped = errors.New("python: app is shutting down")
)

// job is one unit of work for a pool thread; it runs with the thread's
// PyThreadState and reports through its own channel.
type job interface {
	run(w *worker)
}

// pool is a fixed set of OS threads that run Python for one app, fed from
// one unbuffered channel: a request blocks in dispatch until a thread takes
// it, and Go's channel wait queue is FIFO, so the waiting requests are the
// queue.
type pool struct {
	interp  *interpreter
	jobs    chan job
	stop    chan struct{}
	stopped atomic.Bool
	maxWait time.Duration
	wg      sync.WaitGroup
}

func newPool(it *interpreter, threads int, maxWait time.Duration) *pool {
	p := &pool{interp: it, jobs: make(chan job), stop: make(chan struct{}), maxWait: maxWait}
	ready := make(chan struct{})
	p.wg.Add(threads)
	for i := 0; i < threads; i++ {
		go p.thread(ready)
	}
	for i := 0; i < threads; i++ {
		<-ready
	}
	return p
}

// thread is the life of one pool OS thread.
func (p *pool) thread(ready chan<- struct{}) {
	defer p.wg.Done()
	// A PyThreadState belongs to one OS thread; a goroutine may move between
	// threads unless locked. It stays locked to the end, so the OS thread
	// exits with it and leaves nothing behind in Go's thread cache.
	runtime.LockOSThread()
	w := newWorker()
	defer w.unregister()
	w.ts = C.caddysnake_thread_new(p.interp.ci)
	defer C.caddysnake_thread_free(w.ts)
	ready <- struct{}{}
	for {
		select {
		case j := <-p.jobs:
			j.run(w)
		case <-p.stop:
			return
		}
	}
}

// dispatch hands j to an idle thread, waiting up to maxWait for one.
func (p *pool) dispatch(j job, cancel <-chan struct{}) error {
	if p.stopped.Load() {
		return ErrStopped
	}
	select {
	case p.jobs <- j: // an idle thread was waiting: the common, timer-free path
		return nil
	default:
	}
	t := time.NewTimer(p.maxWait)
	defer t.Stop()
	select {
	case p.jobs <- j:
		return nil
	case <-t.C:
		return ErrBusy
	case <-cancel:
		return errClientGone
	case <-p.stop:
		return ErrStopped
	}
}

// close makes the threads exit once their current job is done and calls
// after() when the last one has, without waiting for it: a long streaming
// response must not hold up a config reload.
func (p *pool) close(after func()) {
	if p.stopped.Swap(true) {
		return
	}
	close(p.stop)
	go func() {
		p.wg.Wait()
		after()
	}()
}

var errClientGone = errors.New("python: client went away while queued")

// worker is a pool thread's state that callbacks from C reach through its
// handle. The handle carries a sequence number beside the slot index, so a
// stale handle (kept by a thread the app started) cannot touch a later
// request.
type worker struct {
	slot uint32
	seq  atomic.Uint32 // bumped per request
	ts   *C.PyThreadState
	cur  atomic.Pointer[wsgiRequest]
	strs cStrings // the request laid out for C, reused (wsgi.go)
}

const slotBits = 24

func (w *worker) handle() uintptr {
	return uintptr(w.seq.Load())<<slotBits | uintptr(w.slot)
}

// workers maps slots to workers. Lookups happen on every callback, so the
// table is an immutable slice swapped on (rare) registration.
var workers struct {
	mu    sync.Mutex
	table atomic.Pointer[[]*worker]
	free  []uint32
}

func newWorker() *worker {
	w := &worker{}
	workers.mu.Lock()
	defer workers.mu.Unlock()
	old := workers.table.Load()
	var table []*worker
	if old != nil {
		table = *old
	}
	if n := len(workers.free); n > 0 {
		w.slot = workers.free[n-1]
		workers.free = workers.free[:n-1]
	} else {
		w.slot = uint32(len(table)) + 1 // slot 0 is "no request"
	}
	next := make([]*worker, max(len(table), int(w.slot)+1))
	copy(next, table)
	next[w.slot] = w
	workers.table.Store(&next)
	return w
}

func (w *worker) unregister() {
	workers.mu.Lock()
	defer workers.mu.Unlock()
	table := *workers.table.Load()
	next := make([]*worker, len(table))
	copy(next, table)
	next[w.slot] = nil
	workers.table.Store(&next)
	workers.free = append(workers.free, w.slot)
}

// requestOf finds the request a C callback is about, or nil if the handle is
// stale or unknown.
func requestOf(h uintptr) *wsgiRequest {
	slot := uint32(h & (1<<slotBits - 1))
	tp := workers.table.Load()
	if tp == nil || int(slot) >= len(*tp) {
		return nil
	}
	w := (*tp)[slot]
	if w == nil || uint32(h>>slotBits) != w.seq.Load() {
		return nil
	}
	return w.cur.Load()
}
